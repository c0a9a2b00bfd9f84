// Module entry point: the crypt(3)/shadow verifier, syslog, PAM, the pools
// and the listener live in their own files and register here.
#include <atomic>

#include "addon.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // The pools, the listener's key and the dummy hash are the process's: a
  // second Node environment (a worker thread) loading the addon would share
  // them with the first, tied to its loop. Refuse it instead.
  static std::atomic<bool> loaded{false};
  if (loaded.exchange(true)) {
    Napi::Error::New(env, "saslauthd_native can be loaded by one Node environment per process")
        .ThrowAsJavaScriptException();
    return exports;
  }
  saslauthd::InitCrypt(env, exports);
  saslauthd::InitSyslog(env, exports);
  saslauthd::InitPam(env, exports);
  saslauthd::InitListener(env, exports);
  saslauthd::InitPool(env, exports);
  return exports;
}

NODE_API_MODULE(saslauthd_native, Init)
