// syslog(3) for the detached daemon: Cyrus logs to LOG_AUTH, and admins'
// fail2ban rules and logwatch read auth.log, so we do too.
#include <syslog.h>

#include <string>

#include "addon.h"

namespace saslauthd {
namespace {

std::string g_ident;  // openlog keeps the pointer, so it must live forever

Napi::Value OpenLog(const Napi::CallbackInfo& info) {
  g_ident = info[0].As<Napi::String>().Utf8Value();
  openlog(g_ident.c_str(), LOG_PID | LOG_NDELAY, LOG_AUTH);
  return info.Env().Undefined();
}

Napi::Value Syslog(const Napi::CallbackInfo& info) {
  int prio = info[0].As<Napi::Number>().Int32Value();
  std::string msg = info[1].As<Napi::String>().Utf8Value();
  syslog(prio, "%s", msg.c_str());
  return info.Env().Undefined();
}

}  // namespace

void InitSyslog(Napi::Env env, Napi::Object exports) {
  exports.Set("openlog", Napi::Function::New(env, OpenLog));
  exports.Set("syslog", Napi::Function::New(env, Syslog));
}

}  // namespace saslauthd
