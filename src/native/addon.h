// Shared declarations for the saslauthd-ts native addon: each .cc file
// registers its exports through one Init function called from addon.cc.
#pragma once
#include <napi.h>
#include <string>
#include <vector>

namespace saslauthd {

void InitCrypt(Napi::Env env, Napi::Object exports);
void InitSyslog(Napi::Env env, Napi::Object exports);
void InitPam(Napi::Env env, Napi::Object exports);
void InitListener(Napi::Env env, Napi::Object exports);
void InitPool(Napi::Env env, Napi::Object exports);

// Keep in sync with ShadowCode in src/native/binding.ts.
enum ShadowCode {
  kOk = 0,
  kInvalidUser = 1,
  kUserLookupFailure = 2,
  kInvalidShadowUser = 3,
  kShadowLookupFailure = 4,
  kNisNotAllowed = 5,
  kIncorrectPassword = 6,
  kAccountExpired = 7,
  kPasswordExpired = 8,
};

// auth_shadow.c's verdict for one login (crypt.cc); blocking: call it on a
// pool thread. code is a ShadowCode, detail the strerror text of a lookup
// failure.
struct ShadowVerdict {
  int code;
  std::string detail;
};
ShadowVerdict CheckShadow(const char* user, const char* password);
// The wire reply Cyrus's shadow mechanism sends for a verdict.
std::string ShadowReplyText(const ShadowVerdict& v);

// Copies a JS Buffer into owned memory that is wiped on destruction, so a
// password never outlives the worker that needed it.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(const Napi::Buffer<char>& buf);
  SecretBytes(const char* data, size_t len);
  ~SecretBytes();
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  // NUL-terminated view, as crypt(3) and PAM want.
  const char* c_str() const { return data_.data(); }
  size_t size() const { return data_.size() - 1; }

 private:
  std::vector<char> data_{'\0'};
};

}  // namespace saslauthd
