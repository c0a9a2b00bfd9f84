// The socket side of the daemon, in libuv on Node's own event loop.
//
// A net.Server costs a stream object, a handful of listeners and several
// JS<->C++ crossings per connection; for a protocol of one request per
// connection that is most of the work on the cache-hit path. Here accept,
// read, the two deadlines, the write, the half-close and the discard-until-EOF
// that follows all stay in C++, and JavaScript is called once per chunk
// (normally once per request) and answers with one reply() call.
//
// JavaScript keeps the protocol: decoding, deciding, logging. A connection is
// "tracked" from accept until JavaScript replies to it or destroys it; only
// tracked connections produce events, so a reply ends JavaScript's part.
//
//   bindUnixSocket(path, backlog) -> fd     socket(2) + bind(2) + listen(2)
//   new Listener(onEvent, readTimeoutMs, drainTimeoutMs, maxConnections)
//     .open(fd)          accept on a listening socket (ours, or inherited)
//     .reply(id, bytes)  write, shutdown(SHUT_WR), discard input until EOF
//     .destroy(id)       close now
//     .stopAccepting()   stop, and close this process's listening descriptor
//                        (JavaScript unlinks the path)
//     .destroyAll()
//     .count             open connections
//   onEvent(kind, id, arg): kind 0 data (arg: Buffer), 1 EOF while tracked
//   (arg: bytes received), 2 read deadline while tracked (arg: bytes),
//   3 closed while tracked, 4 connection error (arg: "CODE message"),
//   5 accept error (arg: "CODE message"; out of descriptors, accepting pauses
//   for 100 ms and the connections wait in the backlog), 6 maxConnections
//   open: accepting waits for one to close (arg: maxConnections).
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <string>
#include <unordered_map>

#include "addon.h"

namespace saslauthd {
namespace {

enum EventKind { kData = 0, kEnd = 1, kReadTimeout = 2, kClosed = 3, kConnError = 4, kAcceptError = 5, kConnLimit = 6 };

class Listener;

struct Conn {
  uv_pipe_t pipe;
  uv_timer_t timer;
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  Listener* owner;
  double id;
  std::string reply;
  size_t bytes = 0;
  int open_handles = 2;
  // JavaScript holds state for it and wants events. Once it is false the
  // connection is either closing or replied to (discarding input until EOF).
  bool tracked = true;
  bool eof = false;
  bool shutdown_done = false;
  bool closing = false;
};

Napi::Error UvError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + uv_strerror(err));
  e.Set("code", Napi::String::New(env, uv_err_name(err)));
  return e;
}

class Listener : public Napi::ObjectWrap<Listener> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Listener",
                       {InstanceMethod<&Listener::Open>("open"), InstanceMethod<&Listener::Reply>("reply"),
                        InstanceMethod<&Listener::Destroy>("destroy"),
                        InstanceMethod<&Listener::StopAccepting>("stopAccepting"),
                        InstanceMethod<&Listener::DestroyAll>("destroyAll"),
                        InstanceAccessor<&Listener::Count>("count")});
  }

  explicit Listener(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Listener>(info), context_(info.Env(), "saslauthd.connection") {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsFunction() || !info[1].IsNumber() || !info[2].IsNumber() ||
        !info[3].IsNumber()) {
      Napi::TypeError::New(env, "new Listener(onEvent, readTimeoutMs, drainTimeoutMs, maxConnections)")
          .ThrowAsJavaScriptException();
      return;
    }
    max_conns_ = static_cast<size_t>(std::max(1.0, info[3].As<Napi::Number>().DoubleValue()));
    on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
    read_timeout_ms_ = info[1].As<Napi::Number>().Int64Value();
    drain_timeout_ms_ = info[2].As<Napi::Number>().Int64Value();
    napi_get_uv_event_loop(env, &loop_);
  }

 private:
  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (server_open_ || !info[0].IsNumber()) {
      Napi::TypeError::New(env, "open(fd) once, with a listening socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int fd = info[0].As<Napi::Number>().Int32Value();
    int flags = fcntl(fd, F_GETFL);
    int err = flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ? uv_translate_sys_error(errno) : 0;
    if (err == 0) err = uv_poll_init(loop_, &accept_poll_, fd);
    if (err == 0) {
      accept_poll_.data = this;
      uv_timer_init(loop_, &accept_pause_);
      accept_pause_.data = this;
      err = uv_poll_start(&accept_poll_, UV_READABLE, OnAcceptable);
      if (err != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(&accept_poll_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
      }
    }
    if (err != 0) {
      UvError(env, err, "cannot accept on the socket").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    listen_fd_ = fd;
    server_open_ = true;
    Ref();  // the handles point at this object: keep it alive for the process
    return env.Undefined();
  }

  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Conn* c = Find(info[0]);
    if (c == nullptr || !c->tracked || !info[1].IsBuffer()) return Napi::Boolean::New(env, false);
    auto body = info[1].As<Napi::Buffer<char>>();
    c->reply.assign(body.Data(), body.Length());
    c->tracked = false;
    uv_timer_start(&c->timer, OnDrainTimeout, drain_timeout_ms_, 0);
    // A reply is a few bytes into an empty socket buffer: it almost always
    // goes out at once, and then the half-close can follow at once too,
    // without the write request and the extra loop turns uv_shutdown needs.
    int sent = TryWrite(c);
    if (sent < 0) {
      Close(c);  // EPIPE/ECONNRESET: the client left before reading the reply
      return Napi::Boolean::New(env, false);
    }
    if (static_cast<size_t>(sent) == c->reply.size()) {
      uv_os_fd_t fd;
      if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->pipe), &fd) == 0 && shutdown(fd, SHUT_WR) == 0) {
        c->shutdown_done = true;
        if (c->eof) Close(c);
        return Napi::Boolean::New(env, true);
      }
      Close(c);
      return Napi::Boolean::New(env, false);
    }
    uv_buf_t rest = uv_buf_init(c->reply.data() + sent, static_cast<unsigned>(c->reply.size() - sent));
    if (uv_write(&c->write_req, Stream(c), &rest, 1, OnWritten) != 0) {
      Close(c);
      return Napi::Boolean::New(env, false);
    }
    return Napi::Boolean::New(env, true);
  }

  // uv_try_write: bytes written, 0 if the socket is full, <0 on error.
  static int TryWrite(Conn* c) {
    uv_buf_t buf = uv_buf_init(c->reply.data(), static_cast<unsigned>(c->reply.size()));
    int n = uv_try_write(Stream(c), &buf, 1);
    return n == UV_EAGAIN ? 0 : n;
  }

  Napi::Value Destroy(const Napi::CallbackInfo& info) {
    Conn* c = Find(info[0]);
    if (c != nullptr) {
      c->tracked = false;
      Close(c);
    }
    return info.Env().Undefined();
  }

  Napi::Value StopAccepting(const Napi::CallbackInfo& info) {
    if (server_open_) {
      server_open_ = false;
      uv_close(reinterpret_cast<uv_handle_t*>(&accept_poll_), nullptr);
      uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
      close(listen_fd_);  // this process's copy; the path is JavaScript's to unlink
    }
    return info.Env().Undefined();
  }

  Napi::Value DestroyAll(const Napi::CallbackInfo& info) {
    while (!conns_.empty()) {
      Conn* c = conns_.begin()->second;
      c->tracked = false;
      Close(c);  // removes it from conns_
    }
    return info.Env().Undefined();
  }

  Napi::Value Count(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(conns_.size()));
  }

  static uv_stream_t* Stream(Conn* c) { return reinterpret_cast<uv_stream_t*>(&c->pipe); }

  Conn* Find(const Napi::Value& id) {
    if (!id.IsNumber()) return nullptr;
    auto it = conns_.find(static_cast<uint64_t>(id.As<Napi::Number>().DoubleValue()));
    return it == conns_.end() ? nullptr : it->second;
  }

  // Calls onEvent(kind, id, arg) from a libuv callback; microtasks (a
  // promise's reply) run before this returns.
  void Emit(EventKind kind, double id, napi_value arg) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    on_event_.MakeCallback(Value(), {Napi::Number::New(env, kind), Napi::Number::New(env, id), arg}, context_);
    if (env.IsExceptionPending()) {
      // A bug in the JavaScript handler: report it as an uncaught exception.
      napi_fatal_exception(env, env.GetAndClearPendingException().Value());
    }
  }

  void EmitText(EventKind kind, double id, int err) {
    Napi::HandleScope scope(Env());
    std::string text = std::string(uv_err_name(err)) + " " + uv_strerror(err);
    Emit(kind, id, Napi::String::New(Env(), text));
  }

  void EmitNumber(EventKind kind, Conn* c) {
    Napi::HandleScope scope(Env());
    Emit(kind, c->id, Napi::Number::New(Env(), static_cast<double>(c->bytes)));
  }

  // Our own accept loop instead of uv_listen: when descriptors run out,
  // libuv accepts and closes the waiting connections without a word. Here
  // they stay in the kernel's backlog, accepting pauses for a moment, and the
  // log says why (at most every few seconds while it lasts).
  static void OnAcceptable(uv_poll_t* poll, int status, int) {
    auto* self = static_cast<Listener*>(poll->data);
    if (status < 0) {
      self->PauseAccepting(status);
      return;
    }
    for (int i = 0; i < 64; i++) {
      if (self->conns_.size() >= self->max_conns_) {
        // Keep descriptors for the mechanism (files, LDAP, IMAP): the rest
        // wait in the backlog until a connection closes.
        uv_poll_stop(&self->accept_poll_);
        self->at_limit_ = true;
        if (self->ShouldLog()) {
          Napi::HandleScope scope(self->Env());
          self->Emit(kConnLimit, 0, Napi::Number::New(self->Env(), static_cast<double>(self->max_conns_)));
        }
        return;
      }
      int fd = accept4(self->listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        self->Adopt(fd);
        continue;
      }
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EINTR || err == ECONNABORTED) continue;
      // EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: retrying at once would
      // spin on a readable socket, so wait a moment.
      self->PauseAccepting(uv_translate_sys_error(err));
      return;
    }
  }

  void PauseAccepting(int err) {
    uv_poll_stop(&accept_poll_);
    uv_timer_start(&accept_pause_, OnPauseOver, kAcceptPauseMs, 0);
    if (ShouldLog()) EmitText(kAcceptError, 0, err);
  }

  // Accept trouble lasts: one line every few seconds, not one per attempt.
  bool ShouldLog() {
    uint64_t now = uv_now(loop_);
    if (last_accept_log_ms_ != 0 && now - last_accept_log_ms_ < kAcceptErrorLogMs) return false;
    last_accept_log_ms_ = now;
    return true;
  }

  static void OnPauseOver(uv_timer_t* timer) {
    auto* self = static_cast<Listener*>(timer->data);
    if (self->server_open_) uv_poll_start(&self->accept_poll_, UV_READABLE, OnAcceptable);
  }

  void Adopt(int fd) {
    auto* c = new Conn();
    c->owner = this;
    c->id = ++next_id_;
    uv_pipe_init(loop_, &c->pipe, 0);
    uv_timer_init(loop_, &c->timer);
    c->pipe.data = c;
    c->timer.data = c;
    conns_.emplace(static_cast<uint64_t>(c->id), c);
    if (uv_pipe_open(&c->pipe, fd) != 0) {
      close(fd);
      c->tracked = false;
      Close(c);
      return;
    }
    uv_timer_start(&c->timer, OnReadTimeout, read_timeout_ms_, 0);
    uv_read_start(Stream(c), OnAlloc, OnRead);
  }

  static void OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    // Reads are handled synchronously, one at a time: one buffer serves all.
    Listener* self = static_cast<Conn*>(handle->data)->owner;
    *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
  }

  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<Conn*>(stream->data);
    Listener* self = c->owner;
    if (nread > 0) {
      c->bytes += static_cast<size_t>(nread);
      if (c->tracked) {  // Close() clears it
        Napi::HandleScope scope(self->Env());
        self->Emit(kData, c->id, Napi::Buffer<char>::Copy(self->Env(), buf->base, static_cast<size_t>(nread)));
      }
      // The chunk may hold a password: never leave it in the shared buffer.
      explicit_bzero(buf->base, static_cast<size_t>(nread));
      return;
    }
    if (nread == 0 || c->closing) return;
    if (nread == UV_EOF) {
      c->eof = true;
      uv_read_stop(stream);
      if (c->tracked) {
        self->EmitNumber(kEnd, c);  // JavaScript decides: truncated, or still working
      } else if (c->shutdown_done) {
        self->Close(c);  // otherwise OnShutdown closes it
      }
      return;
    }
    if (c->tracked) self->EmitText(kConnError, c->id, static_cast<int>(nread));
    self->Close(c);
  }

  static void OnWritten(uv_write_t* req, int status) {
    auto* c = static_cast<Conn*>(req->handle->data);
    if (c->closing) return;
    if (status < 0) {  // EPIPE/ECONNRESET: the client left before reading the reply
      c->owner->Close(c);
      return;
    }
    if (uv_shutdown(&c->shutdown_req, Stream(c), OnShutdown) != 0) c->owner->Close(c);
  }

  static void OnShutdown(uv_shutdown_t* req, int status) {
    auto* c = static_cast<Conn*>(req->handle->data);
    if (c->closing) return;
    c->shutdown_done = true;
    // The client has already closed its side: nothing more to wait for.
    if (status < 0 || c->eof) c->owner->Close(c);
  }

  static void OnReadTimeout(uv_timer_t* timer) {
    auto* c = static_cast<Conn*>(timer->data);
    if (c->tracked) c->owner->EmitNumber(kReadTimeout, c);  // JavaScript destroys it, or is still working
  }

  static void OnDrainTimeout(uv_timer_t* timer) {
    auto* c = static_cast<Conn*>(timer->data);
    c->owner->Close(c);
  }

  void Close(Conn* c) {
    if (c->closing) return;
    c->closing = true;
    conns_.erase(static_cast<uint64_t>(c->id));
    if (at_limit_ && conns_.size() < max_conns_) {
      at_limit_ = false;
      if (server_open_) uv_poll_start(&accept_poll_, UV_READABLE, OnAcceptable);
    }
    bool tell = c->tracked;
    c->tracked = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), OnHandleClosed);
    if (tell) Emit(kClosed, c->id, Env().Undefined());
  }

  static void OnHandleClosed(uv_handle_t* handle) {
    auto* c = static_cast<Conn*>(handle->data);
    if (--c->open_handles == 0) {
      explicit_bzero(c->reply.data(), c->reply.size());
      delete c;
    }
  }

  Napi::FunctionReference on_event_;
  Napi::AsyncContext context_;
  uv_loop_t* loop_ = nullptr;
  static constexpr uint64_t kAcceptPauseMs = 100;
  static constexpr uint64_t kAcceptErrorLogMs = 5000;
  uv_poll_t accept_poll_;
  uv_timer_t accept_pause_;
  int listen_fd_ = -1;
  uint64_t last_accept_log_ms_ = 0;
  size_t max_conns_ = 1;
  bool at_limit_ = false;
  bool server_open_ = false;
  int64_t read_timeout_ms_ = 0;
  int64_t drain_timeout_ms_ = 0;
  double next_id_ = 0;
  std::unordered_map<uint64_t, Conn*> conns_;
  char read_buf_[65536];
};

// socket(2), bind(2), listen(2) on a UNIX path, close-on-exec. The caller
// has made sure the path is free (see SaslauthdServer.claimSocket).
Napi::Value BindUnixSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "bindUnixSocket(path: string, backlog: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) {
    UvError(env, UV_ENAMETOOLONG, "cannot listen on " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int err = 0;
  if (fd < 0) {
    err = -errno;
  } else if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0 ||
             listen(fd, info[1].As<Napi::Number>().Int32Value()) != 0) {
    err = -errno;
    close(fd);
  }
  if (err != 0) {
    UvError(env, err, "cannot listen on " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// Closes a descriptor bindUnixSocket returned (a primary that failed to start).
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  if (info[0].IsNumber()) close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

}  // namespace

void InitListener(Napi::Env env, Napi::Object exports) {
  exports.Set("Listener", Listener::Define(env));
  exports.Set("bindUnixSocket", Napi::Function::New(env, BindUnixSocket));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
}

}  // namespace saslauthd
