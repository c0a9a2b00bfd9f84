// crypt(3) through the system's libxcrypt, off the main thread.
//
//   cryptVerify(password, hash[, timeoutMs, high, fp, shedAfterMs]) -> Promise<boolean>
// a job on the hashing pool (pool.h), for LDAP's {CRYPT} values;
//   shadowCheck(user, password, timeoutMs, high, fp, shedAfterMs) -> Promise<[code, text]>
// the shadow mechanism as a job on the same pool, for requests whose door has
// no native connection to answer on (the Dovecot door); and CheckShadow,
// which both that job and the listener's shadow checks (shadow_task.h) run.
// CheckShadow follows Cyrus auth_shadow.c step for step (getpwnam, getspnam,
// *NP*, crypt compare, account expiry, password aging) so replies match, and
// spends one hash on every path so timing does not reveal which accounts
// exist: for an unknown user, the dummy hash has the method and cost of the
// hashes this host really holds (setDummyHash, chosen in JavaScript).
#include <crypt.h>
#include <errno.h>
#include <pwd.h>
#include <shadow.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "addon.h"
#include "pool.h"

namespace saslauthd {
namespace {

// The setting hashed against when there is no real hash to check (unknown
// user, locked hash): by default libxcrypt's preferred method and cost; the
// daemon replaces it with a hash like the ones /etc/shadow holds.
std::mutex g_dummy_mu;
std::string g_dummy_setting;

std::string DummySetting() {
  std::lock_guard<std::mutex> lock(g_dummy_mu);
  return g_dummy_setting;
}

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
    crypt_rn(password, DummySetting().c_str(), data.get(), sizeof(crypt_data));
  }
  explicit_bzero(data.get(), sizeof(crypt_data));
  return ok;
}

void DummyHash(const char* password) { CryptMatches(password, DummySetting().c_str()); }

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
  WipedBuffer buf(16384);
  struct passwd pw;
  struct passwd* pwp = nullptr;
  int err;
  while ((err = getpwnam_r(user, &pw, buf.data(), buf.size(), &pwp)) == ERANGE) buf.Grow();
  if (pwp == nullptr) {
    DummyHash(password);
    if (NotFound(err)) return {kInvalidUser, ""};
    return {kUserLookupFailure, strerror(err)};
  }

  // nss_files fills this with /etc/shadow lines, other users' hashes among
  // them: wiped before each resize and on every way out.
  WipedBuffer sbuf(16384);
  struct spwd sp;
  struct spwd* spp = nullptr;
  while ((err = getspnam_r(user, &sp, sbuf.data(), sbuf.size(), &spp)) == ERANGE) sbuf.Grow();
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

// The shadow check for a request JavaScript answers itself: the verdict's
// code and Cyrus's reply text, as the listener's ShadowTask reports them.
class ShadowCheckJob : public PoolJob {
 public:
  ShadowCheckJob(Napi::Env env, double timeout_ms, std::string user, const Napi::Buffer<char>& pw)
      : PoolJob(env, timeout_ms), user_(std::move(user)), password_(pw) {}
  void Execute() override {
    verdict_ = CheckShadow(user_.c_str(), password_.c_str());
    text_ = ShadowReplyText(verdict_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array r = Napi::Array::New(env, 2);
    r.Set(0u, Napi::Number::New(env, verdict_.code));
    r.Set(1u, Napi::String::New(env, text_));
    return r;
  }

 private:
  std::string user_;  // what the mechanism sees (after any -r join)
  SecretBytes password_;
  ShadowVerdict verdict_{kIncorrectPassword, ""};
  std::string text_;
};

// shadowCheck(user, password, timeoutMs, high, fp, shedAfterMs): user is
// Latin-1 (the client's bytes); the queueing arguments are the throttle's
// decision, as for cryptVerify. Rejects with code ETIMEDOUT or ESHED when the
// job never ran.
Napi::Value ShadowCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 6 || !info[0].IsString() || !info[1].IsBuffer() || !info[2].IsNumber() ||
      !info[3].IsBoolean() || !info[4].IsNumber() || !info[5].IsNumber()) {
    Napi::TypeError::New(env,
                         "shadowCheck(user: string, password: Buffer, timeoutMs: number, high: boolean, fp: number, "
                         "shedAfterMs: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double timeout_ms = info[2].As<Napi::Number>().DoubleValue();
  auto* job = new ShadowCheckJob(env, timeout_ms < 0 ? -1 : timeout_ms, Latin1Bytes(info[0]),
                                 info[1].As<Napi::Buffer<char>>());
  job->SetPriority(info[3].As<Napi::Boolean>().Value(), info[4].As<Napi::Number>().Uint32Value());
  job->SetShedAfter(info[5].As<Napi::Number>().DoubleValue());
  Napi::Promise p = job->Promise();
  job->Submit(HashPool(env));
  return p;
}

// cryptVerify(password, hash[, timeoutMs, high, fp, shedAfterMs]): timeoutMs
// is how long the job may wait in the queue (none: forever); high, fp and
// shedAfterMs are the throttle's queueing decision (pool.h).
Napi::Value CryptVerify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto opt = [&](size_t i) { return info.Length() > i && !info[i].IsUndefined(); };
  bool valid = info.Length() >= 2 && info[0].IsBuffer() && info[1].IsString() && (!opt(2) || info[2].IsNumber()) &&
               (!opt(3) || info[3].IsBoolean()) && (!opt(4) || info[4].IsNumber()) && (!opt(5) || info[5].IsNumber());
  if (!valid) {
    Napi::TypeError::New(env,
                         "cryptVerify(password: Buffer, hash: string, timeoutMs?: number, high?: boolean, fp?: number, "
                         "shedAfterMs?: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double timeout_ms = opt(2) ? std::max(0.0, info[2].As<Napi::Number>().DoubleValue()) : -1;
  auto* job = new CryptVerifyJob(env, timeout_ms, info[0].As<Napi::Buffer<char>>(), info[1].As<Napi::String>().Utf8Value());
  job->SetPriority(opt(3) && info[3].As<Napi::Boolean>().Value(), opt(4) ? info[4].As<Napi::Number>().Uint32Value() : 0);
  if (opt(5)) job->SetShedAfter(info[5].As<Napi::Number>().DoubleValue());
  Napi::Promise p = job->Promise();
  job->Submit(HashPool(env));
  return p;
}

// setDummyHash(setting): what an unknown user's password is hashed against.
// Rejected (false) if libxcrypt cannot hash with it.
Napi::Value SetDummyHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "setDummyHash(setting: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string setting = info[0].As<Napi::String>().Utf8Value();
  auto data = std::make_unique<crypt_data>();
  memset(data.get(), 0, sizeof(crypt_data));
  const char* out = crypt_rn("probe", setting.c_str(), data.get(), sizeof(crypt_data));
  bool usable = out != nullptr && out[0] != '*';
  explicit_bzero(data.get(), sizeof(crypt_data));
  if (usable) {
    std::lock_guard<std::mutex> lock(g_dummy_mu);
    g_dummy_setting = setting;
  }
  return Napi::Boolean::New(env, usable);
}

// cryptGensalt(prefix, count) -> a setting (libxcrypt's crypt_gensalt), or
// undefined: the method and cost login.defs names, for a host without hashes.
Napi::Value CryptGensalt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "cryptGensalt(prefix: string, count: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string prefix = info[0].As<Napi::String>().Utf8Value();
  char buf[CRYPT_GENSALT_OUTPUT_SIZE];
  const char* s = crypt_gensalt_rn(prefix.empty() ? nullptr : prefix.c_str(),
                                   static_cast<unsigned long>(info[1].As<Napi::Number>().Int64Value()), nullptr, 0, buf,
                                   sizeof buf);
  if (s == nullptr || s[0] == '*') return env.Undefined();
  return Napi::String::New(env, s);
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
  exports.Set("setDummyHash", Napi::Function::New(env, SetDummyHash));
  exports.Set("cryptGensalt", Napi::Function::New(env, CryptGensalt));
  exports.Set("raiseFdLimit", Napi::Function::New(env, RaiseFdLimit));
  exports.Set("preferredCryptPrefix", Napi::String::New(env, g_dummy_setting.substr(0, g_dummy_setting.find('$', 1) + 1)));
}

}  // namespace saslauthd
