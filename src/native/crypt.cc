// crypt(3) through the system's libxcrypt, off the main thread.
//
// Two entry points, both jobs on the hashing pool (pool.h):
//   cryptVerify(password, hash[, timeoutMs])  -> Promise<boolean>   (LDAP {CRYPT})
//   shadowCheck(user, password[, timeoutMs])  -> Promise<{code, text}>
// (text: the wire reply). The listener's native shadow path (listener.cc)
// calls CheckShadow directly.
// A job still queued after timeoutMs is never run (rejects, code ETIMEDOUT).
// shadowCheck follows Cyrus auth_shadow.c step for step (getpwnam, getspnam,
// *NP*, crypt compare, account expiry, password aging) so replies match, and
// spends one hash on every path so timing does not reveal which accounts exist.
#include <crypt.h>
#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"
#include "pool.h"

namespace saslauthd {
namespace {

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

class CryptVerifyJob : public PoolJob {
 public:
  CryptVerifyJob(Napi::Env env, double timeout_ms, const Napi::Buffer<char>& pw, std::string hash)
      : PoolJob(env, timeout_ms), password_(pw), hash_(std::move(hash)) {}
  void Execute() override { ok_ = CryptMatches(password_.c_str(), hash_.c_str()); }
  Napi::Value Result(Napi::Env env) override { return Napi::Boolean::New(env, ok_); }

 private:
  SecretBytes password_;
  std::string hash_;
  bool ok_ = false;
};

}  // namespace

ShadowVerdict CheckShadow(const char* user, const char* password) {
  std::vector<char> buf(16384);
  struct passwd pw;
  struct passwd* pwp = nullptr;
  int err;
  while ((err = getpwnam_r(user, &pw, buf.data(), buf.size(), &pwp)) == ERANGE) buf.resize(buf.size() * 2);
  if (pwp == nullptr) {
    DummyHash(password);
    if (NotFound(err)) return {kInvalidUser, ""};
    return {kUserLookupFailure, strerror(err)};
  }

  std::vector<char> sbuf(16384);
  struct spwd sp;
  struct spwd* spp = nullptr;
  while ((err = getspnam_r(user, &sp, sbuf.data(), sbuf.size(), &spp)) == ERANGE) sbuf.resize(sbuf.size() * 2);
  if (spp == nullptr) {
    DummyHash(password);
    if (NotFound(err)) return {kInvalidShadowUser, ""};
    return {kShadowLookupFailure, strerror(err)};
  }
  if (strcmp(sp.sp_pwdp, "*NP*") == 0) {
    DummyHash(password);
    return {kNisNotAllowed, ""};
  }
  bool match = CryptMatches(password, sp.sp_pwdp);
  explicit_bzero(sbuf.data(), sbuf.size());
  if (!match) return {kIncorrectPassword, ""};
  long today = static_cast<long>(time(nullptr) / 86400);
  // As Cyrus: sp_expire == 0 is "expired" (cyrus-sasl#254), and sp_lstchg
  // == 0 is not special-cased.
  if (sp.sp_expire != -1 && today > sp.sp_expire) return {kAccountExpired, ""};
  if (sp.sp_lstchg != -1 && sp.sp_max != -1 && sp.sp_lstchg + sp.sp_max < today) return {kPasswordExpired, ""};
  return {kOk, ""};
}

std::string ShadowReplyText(const ShadowVerdict& v) {
  switch (v.code) {
    case kOk:
      return "OK";
    case kInvalidUser:
      return "NO Invalid username";
    case kUserLookupFailure:
      return "NO Username lookup failure: " + v.detail;
    case kInvalidShadowUser:
      return "NO Invalid shadow username";
    case kShadowLookupFailure:
      return "NO Username shadow lookup failure: " + v.detail;
    case kNisNotAllowed:
      return "NO Insufficient permission to access NIS authentication database (saslauthd)";
    case kIncorrectPassword:
      return "NO Incorrect password";
    case kAccountExpired:
      return "NO Account expired";
    case kPasswordExpired:
      return "NO Password expired";
  }
  return "NO internal mechanism failure";
}

namespace {

class ShadowJob : public PoolJob {
 public:
  ShadowJob(Napi::Env env, double timeout_ms, std::string user, const Napi::Buffer<char>& pw)
      : PoolJob(env, timeout_ms), user_(std::move(user)), password_(pw) {}

  void Execute() override { verdict_ = CheckShadow(user_.c_str(), password_.c_str()); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("code", Napi::Number::New(env, verdict_.code));
    r.Set("text", Napi::String::New(env, ShadowReplyText(verdict_)));
    return r;
  }

 private:
  std::string user_;
  SecretBytes password_;
  ShadowVerdict verdict_{kIncorrectPassword, ""};
};

// The optional third argument: ms the job may wait in the queue; none = forever.
bool TimeoutArg(const Napi::CallbackInfo& info, double* timeout_ms) {
  *timeout_ms = -1;
  if (info.Length() < 3 || info[2].IsUndefined()) return true;
  if (!info[2].IsNumber()) return false;
  *timeout_ms = std::max(0.0, info[2].As<Napi::Number>().DoubleValue());
  return true;
}

Napi::Value CryptVerify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double timeout_ms;
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsString() || !TimeoutArg(info, &timeout_ms)) {
    Napi::TypeError::New(env, "cryptVerify(password: Buffer, hash: string, timeoutMs?: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* job = new CryptVerifyJob(env, timeout_ms, info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::String>().Utf8Value());
  Napi::Promise p = job->Promise();
  job->Submit();
  return p;
}

Napi::Value ShadowCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double timeout_ms;
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer() || !TimeoutArg(info, &timeout_ms)) {
    Napi::TypeError::New(env, "shadowCheck(user: string, password: Buffer, timeoutMs?: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* job = new ShadowJob(env, timeout_ms, info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Buffer<char>>());
  Napi::Promise p = job->Promise();
  job->Submit();
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
