// Logging to syslog without ever blocking the event loop. glibc's syslog(3)
// writes to /dev/log with a blocking send on the calling thread: when
// journald or rsyslog stalls, so does every answer, and a daemon logs the most
// during a failure flood. Here the datagram goes out with MSG_DONTWAIT; when
// the log daemon's queue is full the line is dropped and counted (the
// caller reports the count), never waited for.
//
//   syslogOpen(path) -> boolean        connect a datagram socket to path (/dev/log)
//   syslogSend(line) -> 0 | 1 | -errno  0 sent, 1 dropped (would block)
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "addon.h"

namespace saslauthd {
namespace {

int g_fd = -1;
std::string g_path;

bool Connect() {
  if (g_fd >= 0) close(g_fd);
  g_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (g_fd < 0) return false;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (g_path.size() >= sizeof sa.sun_path) return false;
  memcpy(sa.sun_path, g_path.c_str(), g_path.size() + 1);
  if (connect(g_fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0) {
    close(g_fd);
    g_fd = -1;
    return false;
  }
  return true;
}

Napi::Value SyslogOpen(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "syslogOpen(path: string)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  g_path = info[0].As<Napi::String>().Utf8Value();
  return Napi::Boolean::New(info.Env(), Connect());
}

int Send(const std::string& line) {
  if (g_fd < 0 && !Connect()) return -ENOTCONN;
  if (send(g_fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
  return errno == EAGAIN || errno == EWOULDBLOCK ? 1 : -errno;
}

Napi::Value SyslogSend(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "syslogSend(line: string)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  std::string line = info[0].As<Napi::String>().Utf8Value();
  int r = Send(line);
  // The log daemon restarted (its socket is new): reconnect once and retry.
  if (r == -ECONNREFUSED || r == -ENOTCONN || r == -ENOENT) {
    if (Connect()) r = Send(line);
  }
  return Napi::Number::New(info.Env(), r);
}

}  // namespace

void InitSyslog(Napi::Env env, Napi::Object exports) {
  exports.Set("syslogOpen", Napi::Function::New(env, SyslogOpen));
  exports.Set("syslogSend", Napi::Function::New(env, SyslogSend));
}

}  // namespace saslauthd
