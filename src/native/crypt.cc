// crypt(3) through the system's libxcrypt, off the main thread.
//
// Two entry points, both AsyncWorkers on the libuv thread pool:
//   cryptVerify(password, hash)  -> Promise<boolean>   (LDAP {CRYPT})
//   shadowCheck(user, password)  -> Promise<{code, detail}>
// shadowCheck follows Cyrus auth_shadow.c step for step (getpwnam, getspnam,
// *NP*, crypt compare, account expiry, password aging) so replies match, and
// spends one hash on every path so timing does not reveal which accounts exist.
#include <crypt.h>
#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <sys/resource.h>
#include <time.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"

namespace saslauthd {
namespace {

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

// A setting of the system's preferred method and default cost, hashed
// against when there is no real hash to check (unknown user, locked hash).
std::string g_dummy_setting;

bool ConstantTimeEquals(const char* a, const char* b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la != lb) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < la; i++) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// True when crypt(password, hash) reproduces hash. Never true for a hash that
// libxcrypt cannot parse ("!", "*", "", "x"): those still cost one dummy hash.
bool CryptMatches(const char* password, const char* hash) {
  auto data = std::make_unique<crypt_data>();
  memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_rn(password, hash, data.get(), sizeof(crypt_data));
  bool ok = out != nullptr && out[0] != '*' && ConstantTimeEquals(out, hash);
  if (out == nullptr || out[0] == '*') {
    memset(data.get(), 0, sizeof(crypt_data));
    crypt_rn(password, g_dummy_setting.c_str(), data.get(), sizeof(crypt_data));
  }
  explicit_bzero(data.get(), sizeof(crypt_data));
  return ok;
}

void DummyHash(const char* password) { CryptMatches(password, g_dummy_setting.c_str()); }

bool NotFound(int err) {
  return err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM;
}

class CryptVerifyWorker : public Napi::AsyncWorker {
 public:
  CryptVerifyWorker(Napi::Env env, const Napi::Buffer<char>& pw, std::string hash)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), password_(pw),
        hash_(std::move(hash)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { ok_ = CryptMatches(password_.c_str(), hash_.c_str()); }
  void OnOK() override { deferred_.Resolve(Napi::Boolean::New(Env(), ok_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  SecretBytes password_;
  std::string hash_;
  bool ok_ = false;
};

class ShadowWorker : public Napi::AsyncWorker {
 public:
  ShadowWorker(Napi::Env env, std::string user, const Napi::Buffer<char>& pw)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), user_(std::move(user)),
        password_(pw) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::vector<char> buf(16384);
    struct passwd pw;
    struct passwd* pwp = nullptr;
    int err;
    while ((err = getpwnam_r(user_.c_str(), &pw, buf.data(), buf.size(), &pwp)) == ERANGE)
      buf.resize(buf.size() * 2);
    if (pwp == nullptr) {
      DummyHash(password_.c_str());
      if (NotFound(err)) {
        code_ = kInvalidUser;
      } else {
        code_ = kUserLookupFailure;
        detail_ = strerror(err);
      }
      return;
    }

    std::vector<char> sbuf(16384);
    struct spwd sp;
    struct spwd* spp = nullptr;
    while ((err = getspnam_r(user_.c_str(), &sp, sbuf.data(), sbuf.size(), &spp)) == ERANGE)
      sbuf.resize(sbuf.size() * 2);
    if (spp == nullptr) {
      DummyHash(password_.c_str());
      if (NotFound(err)) {
        code_ = kInvalidShadowUser;
      } else {
        code_ = kShadowLookupFailure;
        detail_ = strerror(err);
      }
      return;
    }
    if (strcmp(sp.sp_pwdp, "*NP*") == 0) {
      DummyHash(password_.c_str());
      code_ = kNisNotAllowed;
      return;
    }
    bool match = CryptMatches(password_.c_str(), sp.sp_pwdp);
    explicit_bzero(sbuf.data(), sbuf.size());
    if (!match) {
      code_ = kIncorrectPassword;
      return;
    }
    long today = static_cast<long>(time(nullptr) / 86400);
    // As Cyrus: sp_expire == 0 is "expired" (cyrus-sasl#254), and sp_lstchg
    // == 0 is not special-cased.
    if (sp.sp_expire != -1 && today > sp.sp_expire) {
      code_ = kAccountExpired;
      return;
    }
    if (sp.sp_lstchg != -1 && sp.sp_max != -1 && sp.sp_lstchg + sp.sp_max < today) {
      code_ = kPasswordExpired;
      return;
    }
    code_ = kOk;
  }

  void OnOK() override {
    Napi::Object r = Napi::Object::New(Env());
    r.Set("code", Napi::Number::New(Env(), code_));
    r.Set("detail", Napi::String::New(Env(), detail_));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string user_;
  SecretBytes password_;
  int code_ = kIncorrectPassword;
  std::string detail_;
};

Napi::Value CryptVerify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsString()) {
    Napi::TypeError::New(env, "cryptVerify(password: Buffer, hash: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new CryptVerifyWorker(env, info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ShadowCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "shadowCheck(user: string, password: Buffer)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* w = new ShadowWorker(env, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Buffer<char>>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// Thousands of concurrent clients need thousands of descriptors; raise the
// soft limit to the hard one, as a daemon should. Returns the new soft limit.
Napi::Value RaiseFdLimit(const Napi::CallbackInfo& info) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return Napi::Number::New(info.Env(), static_cast<double>(rl.rlim_cur));
}

}  // namespace

void InitCrypt(Napi::Env env, Napi::Object exports) {
  char buf[CRYPT_GENSALT_OUTPUT_SIZE];
  const char* s = crypt_gensalt_rn(nullptr, 0, nullptr, 0, buf, sizeof buf);
  g_dummy_setting = s != nullptr ? s : "$6$saslauthdts$";
  exports.Set("cryptVerify", Napi::Function::New(env, CryptVerify));
  exports.Set("shadowCheck", Napi::Function::New(env, ShadowCheck));
  exports.Set("raiseFdLimit", Napi::Function::New(env, RaiseFdLimit));
  exports.Set("preferredCryptPrefix", Napi::String::New(env, g_dummy_setting.substr(0, g_dummy_setting.find('$', 1) + 1)));
}

}  // namespace saslauthd
