// PAM authentication, as Cyrus auth_pam.c does it, off the main thread.
//
//   pamAuthenticate({service, user, password, rhost?, timeoutMs?, high?, fp?, shedAfterMs?})
//     -> Promise<{ok, code, stage, message, delayUs}>
//
// One task per call on the PAM pool (pool.h: threads of our own, not libuv's,
// so a slow PAM stack never stalls fs and DNS work; known-good first; a task
// still queued at its deadline never runs, so a backlog behind sssd or LDAP
// does not later run pam_authenticate for clients long gone and bump their
// faillock counters). service and user are Latin-1 strings: one character
// per byte the client sent, passed to PAM as those bytes. pam_start(service, user)
// -> [PAM_RHOST] -> PAM_FAIL_DELAY hook -> pam_authenticate(PAM_SILENT |
// PAM_DISALLOW_NULL_AUTHTOK) ->
// pam_acct_mgmt(PAM_SILENT) -> pam_end. The fail-delay hook makes libpam hand
// us the delay it computed instead of sleeping in this thread: a pool thread
// is held only for the real work, and the daemon waits out the delay on a
// timer. Strings are passed full length (no fixed buffers); the numeric PAM
// code is returned so callers never parse pam_strerror text.
#include <security/pam_appl.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "addon.h"
#include "pool.h"

namespace saslauthd {
namespace {

struct ConvData {
  const char* login;
  const char* password;
  pam_handle_t* pamh;
  // Filled by the PAM_FAIL_DELAY hook.
  unsigned delay_us;
  bool delay_reported;
};

void FreeResponses(pam_response* resp, int n) {
  for (int i = 0; i < n; i++) {
    if (resp[i].resp != nullptr) {
      explicit_bzero(resp[i].resp, strlen(resp[i].resp));
      free(resp[i].resp);
    }
  }
  free(resp);
}

// Cyrus saslauthd_pam_conv: ECHO_OFF is the password; ECHO_ON is the login
// only when its text is PAM_USER_PROMPT, else an empty (NULL) answer; info and
// error messages are ignored; any other style fails the conversation. Every
// message of the call gets its own response slot (num_msg of them).
//
// With PAM_USER_PROMPT unset (nothing sets it: pam_start does not, and
// neither do we or Cyrus), Cyrus 2.1.28 passes the NULL item to strcmp and
// the process dies (Debian's build segfaults in libc; the client gets no
// answer). We cannot copy a crash; the nearest answer keeps Cyrus's rule:
// no text equals an unset prompt, so the message gets an empty answer, as
// any prompt other than the user prompt does. (Linux-PAM's own default,
// "login:", is pam_get_user's, and Cyrus never compares against it.)
int Converse(int num_msg, const struct pam_message** msg, struct pam_response** resp, void* appdata) {
  auto* data = static_cast<ConvData*>(appdata);
  if (num_msg <= 0 || num_msg > PAM_MAX_NUM_MSG || msg == nullptr || resp == nullptr) return PAM_CONV_ERR;
  auto* out = static_cast<pam_response*>(calloc(static_cast<size_t>(num_msg), sizeof(pam_response)));
  if (out == nullptr) return PAM_CONV_ERR;
  for (int i = 0; i < num_msg; i++) {
    out[i].resp_retcode = PAM_SUCCESS;
    switch (msg[i]->msg_style) {
      case PAM_PROMPT_ECHO_OFF:
        out[i].resp = strdup(data->password);
        if (out[i].resp == nullptr) {
          FreeResponses(out, i);
          return PAM_CONV_ERR;
        }
        break;
      case PAM_PROMPT_ECHO_ON: {
        // Re-read each time: a module may have changed it meanwhile.
        const void* item = nullptr;
        if (pam_get_item(data->pamh, PAM_USER_PROMPT, &item) != PAM_SUCCESS) {
          FreeResponses(out, i);
          return PAM_CONV_ERR;
        }
        const char* prompt = static_cast<const char*>(item);
        if (prompt != nullptr && msg[i]->msg != nullptr && strcmp(msg[i]->msg, prompt) == 0) {
          out[i].resp = strdup(data->login);
          if (out[i].resp == nullptr) {
            FreeResponses(out, i);
            return PAM_CONV_ERR;
          }
        }
        break;
      }
      case PAM_ERROR_MSG:
      case PAM_TEXT_INFO:
        break;
      default:
        FreeResponses(out, i);
        return PAM_CONV_ERR;
    }
  }
  *resp = out;
  return PAM_SUCCESS;
}

// libpam calls this at the end of pam_authenticate, success or not, with the
// (randomised) delay the modules asked for, instead of sleeping.
void FailDelay(int /* status */, unsigned usec, void* appdata) {
  auto* data = static_cast<ConvData*>(appdata);
  if (data == nullptr) return;
  data->delay_us = usec;
  data->delay_reported = true;
}

class PamTask : public PoolJob {
 public:
  PamTask(Napi::Env env, double timeout_ms, std::string service, std::string user, const Napi::Buffer<char>& pw,
          bool has_rhost, std::string rhost)
      : PoolJob(env, timeout_ms), service_(std::move(service)), user_(std::move(user)), password_(pw),
        has_rhost_(has_rhost), rhost_(std::move(rhost)) {}

  void Execute() override {
    ConvData data{user_.c_str(), password_.c_str(), nullptr, 0, false};
    struct pam_conv conv = {Converse, &data};
    pam_handle_t* pamh = nullptr;

    stage_ = "pam_start";
    code_ = pam_start(service_.c_str(), user_.c_str(), &conv, &pamh);
    if (code_ != PAM_SUCCESS) {
      message_ = pam_strerror(pamh, code_);
      if (pamh != nullptr) pam_end(pamh, code_);
      return;
    }
    data.pamh = pamh;
    if (has_rhost_) {
      // The 5-field protocol's "a.b.c.d;port": PAM wants the host only.
      std::string host = rhost_.substr(0, rhost_.find(';'));
      code_ = pam_set_item(pamh, PAM_RHOST, host.c_str());
      if (code_ != PAM_SUCCESS) {
        message_ = pam_strerror(pamh, code_);
        pam_end(pamh, code_);
        return;
      }
    }
    void (*hook)(int, unsigned, void*) = FailDelay;
    code_ = pam_set_item(pamh, PAM_FAIL_DELAY, reinterpret_cast<const void*>(hook));
    if (code_ != PAM_SUCCESS) {
      // Without the hook libpam would sleep in this thread; refuse instead.
      message_ = pam_strerror(pamh, code_);
      pam_end(pamh, code_);
      return;
    }

    stage_ = "pam_authenticate";
    // Cyrus passes PAM_SILENT only, so with Debian's "pam_unix.so nullok" an
    // account with an empty password field accepts any password over SMTP.
    // PAM_DISALLOW_NULL_AUTHTOK closes that; nothing else changes.
    code_ = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
    if (code_ == PAM_SUCCESS) {
      stage_ = "pam_acct_mgmt";
      code_ = pam_acct_mgmt(pamh, PAM_SILENT);
    }
    message_ = pam_strerror(pamh, code_);
    if (code_ == PAM_SUCCESS) stage_ = "done";
    delay_us_ = data.delay_reported ? data.delay_us : 0;
    pam_end(pamh, code_);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("ok", Napi::Boolean::New(env, code_ == PAM_SUCCESS && stage_ == "done"));
    r.Set("code", Napi::Number::New(env, code_));
    r.Set("stage", Napi::String::New(env, stage_));
    r.Set("message", Napi::String::New(env, message_));
    r.Set("delayUs", Napi::Number::New(env, delay_us_));
    return r;
  }

 private:
  std::string service_;
  std::string user_;
  SecretBytes password_;
  bool has_rhost_;
  std::string rhost_;
  int code_ = PAM_SYSTEM_ERR;
  std::string stage_ = "pam_start";
  std::string message_;
  unsigned delay_us_ = 0;
};

std::string Latin1CString(const Napi::Value& v) {
  std::string out = Latin1Bytes(v);
  // A C string: PAM stops at a NUL anyway, so cut there.
  out.resize(strnlen(out.c_str(), out.size()));
  return out;
}

Napi::Value PamAuthenticate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage =
      "pamAuthenticate({service: string, user: string, password: Buffer, rhost?: string, timeoutMs?: number, "
      "high?: boolean, fp?: number, shedAfterMs?: number})";
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value service = o.Get("service");
  Napi::Value user = o.Get("user");
  Napi::Value password = o.Get("password");
  Napi::Value rhost = o.Get("rhost");
  Napi::Value timeout = o.Get("timeoutMs");
  Napi::Value high = o.Get("high");
  Napi::Value fp = o.Get("fp");
  Napi::Value shed = o.Get("shedAfterMs");
  bool has_rhost = !rhost.IsUndefined() && !rhost.IsNull();
  if (!service.IsString() || !user.IsString() || !password.IsBuffer() || (has_rhost && !rhost.IsString()) ||
      !(timeout.IsUndefined() || timeout.IsNumber()) || !(high.IsUndefined() || high.IsBoolean()) ||
      !(fp.IsUndefined() || fp.IsNumber()) || !(shed.IsUndefined() || shed.IsNumber())) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* t = new PamTask(env, timeout.IsNumber() ? timeout.As<Napi::Number>().DoubleValue() : -1,
                        Latin1CString(service), Latin1CString(user), password.As<Napi::Buffer<char>>(), has_rhost,
                        has_rhost ? Latin1CString(rhost) : std::string());
  t->SetPriority(high.IsBoolean() && high.As<Napi::Boolean>().Value(), fp.IsNumber() ? fp.As<Napi::Number>().Uint32Value() : 0);
  if (shed.IsNumber()) t->SetShedAfter(shed.As<Napi::Number>().DoubleValue());
  Napi::Promise p = t->Promise();
  t->Submit(PamPool(env));
  return p;
}

}  // namespace

void InitPam(Napi::Env env, Napi::Object exports) {
  exports.Set("pamAuthenticate", Napi::Function::New(env, PamAuthenticate));
}

}  // namespace saslauthd
