// Module entry point: the crypt(3)/shadow verifier, syslog and the PAM
// conversation live in their own files and register here.
#include "addon.h"

#include <cstring>

namespace saslauthd {

SecretBytes::SecretBytes(const Napi::Buffer<char>& buf) {
  data_.assign(buf.Data(), buf.Data() + buf.Length());
  data_.push_back('\0');
}

SecretBytes::SecretBytes(const char* data, size_t len) {
  data_.assign(data, data + len);
  data_.push_back('\0');
}

SecretBytes::~SecretBytes() { explicit_bzero(data_.data(), data_.size()); }

}  // namespace saslauthd

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  saslauthd::InitCrypt(env, exports);
  saslauthd::InitSyslog(env, exports);
  saslauthd::InitPam(env, exports);
  saslauthd::InitListener(env, exports);
  saslauthd::InitPool(env, exports);
  return exports;
}

NODE_API_MODULE(saslauthd_native, Init)
