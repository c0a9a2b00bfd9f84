// Shared declarations for the saslauthd-ts native addon: each .cc file
// registers its exports through one Init function called from addon.cc.
#pragma once
#include <napi.h>
#include <string.h>

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

// A Latin-1 string from JavaScript back to the bytes it stands for (one
// character per byte, as request fields travel; see server/exchange.ts).
inline std::string Latin1Bytes(const Napi::Value& v) {
  size_t len = 0;
  napi_get_value_string_latin1(v.Env(), v, nullptr, 0, &len);
  std::string out(len, '\0');
  napi_get_value_string_latin1(v.Env(), v, out.data(), len + 1, &len);
  return out;
}

// Secret bytes (a password) in memory of their own, sized once (no
// reallocation leaves an unwiped copy behind) and wiped on destruction.
class SecretBytes {
 public:
  SecretBytes() : data_(1, '\0') {}
  SecretBytes(const char* data, size_t len) : data_(len + 1, '\0') {
    if (len > 0) memcpy(data_.data(), data, len);
  }
  explicit SecretBytes(const Napi::Buffer<char>& buf) : SecretBytes(buf.Data(), buf.Length()) {}
  ~SecretBytes() { explicit_bzero(data_.data(), data_.size()); }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  // NUL-terminated view, as crypt(3) and PAM want.
  const char* c_str() const { return data_.data(); }
  size_t size() const { return data_.size() - 1; }

 private:
  std::vector<char> data_;
};

// A buffer for C library calls that fill it with other people's secrets
// (getspnam_r's copy of /etc/shadow lines): wiped when it grows and when it
// goes, on every path out.
class WipedBuffer {
 public:
  explicit WipedBuffer(size_t n) : data_(n) {}
  ~WipedBuffer() { Wipe(); }
  WipedBuffer(const WipedBuffer&) = delete;
  WipedBuffer& operator=(const WipedBuffer&) = delete;
  char* data() { return data_.data(); }
  size_t size() const { return data_.size(); }
  void Grow() {
    Wipe();
    data_ = std::vector<char>(data_.size() * 2);
  }

 private:
  void Wipe() { explicit_bzero(data_.data(), data_.size()); }
  std::vector<char> data_;
};

}  // namespace saslauthd
