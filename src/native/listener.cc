// See listener.h.
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

#include "fingerprint.h"
#include "shadow_task.h"

namespace saslauthd {

namespace {

Napi::Error UvError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + uv_strerror(err));
  e.Set("code", Napi::String::New(env, uv_err_name(err)));
  return e;
}

// One character per byte: JavaScript gets the bytes the client sent, and
// hands them back unchanged (Buffer.from(s, 'latin1')).
Napi::Value Latin1(Napi::Env env, Field f) {
  napi_value v;
  napi_create_string_latin1(env, f.data, f.size, &v);
  return Napi::Value(env, v);
}

}  // namespace

Napi::Function Listener::Define(Napi::Env env) {
  return DefineClass(env, "Listener",
                     {InstanceMethod<&Listener::Open>("open"), InstanceMethod<&Listener::Reply>("reply"),
                      InstanceMethod<&Listener::Password>("password"),
                      InstanceMethod<&Listener::CheckShadow>("checkShadow"),
                      InstanceMethod<&Listener::Destroy>("destroy"),
                      InstanceMethod<&Listener::StopAccepting>("stopAccepting"),
                      InstanceMethod<&Listener::DestroyAll>("destroyAll"), InstanceAccessor<&Listener::Count>("count"),
                      InstanceAccessor<&Listener::Busy>("busy")});
}

Listener::Listener(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<Listener>(info), context_(info.Env(), "saslauthd.connection") {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsFunction() || !info[1].IsNumber() || !info[2].IsNumber() ||
      !info[3].IsNumber() || !info[4].IsNumber()) {
    Napi::TypeError::New(env, "new Listener(onEvent, readTimeoutMs, drainTimeoutMs, maxConnections, decideTimeoutMs)")
        .ThrowAsJavaScriptException();
    return;
  }
  max_conns_ = static_cast<size_t>(std::max(1.0, info[3].As<Napi::Number>().DoubleValue()));
  on_event_ = Napi::Persistent(info[0].As<Napi::Function>());
  read_timeout_ms_ = info[1].As<Napi::Number>().Int64Value();
  drain_timeout_ms_ = info[2].As<Napi::Number>().Int64Value();
  decide_timeout_ms_ = std::max<int64_t>(0, info[4].As<Napi::Number>().Int64Value());
  napi_get_uv_event_loop(env, &loop_);
}

// The handles point at this object, so it is Ref()ed before they exist and
// stays alive for the process (a listener is made once per process). A
// failed open closes them again; open() works at most once.
Napi::Value Listener::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (accepting_ != Accepting::kNever || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "open(fd) once, with a listening socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    UvError(env, uv_translate_sys_error(errno), "cannot accept on the socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Ref();
  accepting_ = Accepting::kStopped;  // until the handles are up
  int err = uv_poll_init(loop_, &accept_poll_, fd);
  if (err != 0) {
    Unref();
    UvError(env, err, "cannot accept on the socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  accept_poll_.data = this;
  uv_timer_init(loop_, &accept_pause_);
  accept_pause_.data = this;
  err = uv_poll_start(&accept_poll_, UV_READABLE, OnAcceptable);
  if (err != 0) {
    // The handles point at this object until libuv has closed them: the
    // last close callback lets it go.
    closing_handles_ = 2;
    uv_close(reinterpret_cast<uv_handle_t*>(&accept_poll_), OnAcceptHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), OnAcceptHandleClosed);
    UvError(env, err, "cannot accept on the socket").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  listen_fd_ = fd;
  accepting_ = Accepting::kOpen;
  return env.Undefined();
}

void Listener::OnAcceptHandleClosed(uv_handle_t* handle) {
  auto* self = static_cast<Listener*>(handle->data);
  if (--self->closing_handles_ == 0) self->Unref();
}

Conn* Listener::Find(const Napi::Value& id) {
  if (!id.IsNumber()) return nullptr;
  auto it = conns_.find(static_cast<uint64_t>(id.As<Napi::Number>().DoubleValue()));
  return it == conns_.end() ? nullptr : it->second;
}

void Listener::SetBusy(Conn* c, bool busy) {
  bool was = c->state == ConnState::kDeciding || c->state == ConnState::kChecking;
  if (was && !busy) busy_--;
  if (!was && busy) busy_++;
}

// reply(id, bytes): only for a request JavaScript holds (a shadow check that
// has already answered makes this false, as does a client that left).
Napi::Value Listener::Reply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Conn* c = Find(info[0]);
  if (c == nullptr || !info[1].IsBuffer()) return Napi::Boolean::New(env, false);
  if (c->state == ConnState::kChecking) {
    // JavaScript answers a request whose check is still queued (shutdown):
    // only if the hashing thread has not.
    if (!c->task->Claim()) return Napi::Boolean::New(env, false);
    c->task = nullptr;
    busy_++;  // the check outlives its connection's part in it (see ShadowFinished)
  } else if (c->state != ConnState::kDeciding) {
    return Napi::Boolean::New(env, false);
  }
  auto body = info[1].As<Napi::Buffer<char>>();
  return Napi::Boolean::New(env, SendReply(c, body.Data(), body.Length()));
}

Napi::Value Listener::Password(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Conn* c = Find(info[0]);
  if (c == nullptr || (c->state != ConnState::kDeciding && c->state != ConnState::kChecking) ||
      c->request.status() != RequestDecoder::Status::kComplete) {
    return env.Undefined();
  }
  Field pw = c->request.field(RequestDecoder::kPassword);
  return Napi::Buffer<char>::Copy(env, pw.data, pw.size);
}

// checkShadow(id, user, timeoutMs, high, fp, shedAfterMs, hold)
Napi::Value Listener::CheckShadow(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[1].IsString() || !info[2].IsNumber() || !info[3].IsBoolean() ||
      !info[4].IsNumber() || !info[5].IsNumber() || !info[6].IsNumber()) {
    Napi::TypeError::New(env,
                         "checkShadow(id, user: string, timeoutMs: number, high: boolean, fp: number, "
                         "shedAfterMs: number, hold: number)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Conn* c = Find(info[0]);
  if (c == nullptr || c->state != ConnState::kDeciding) return env.Undefined();
  auto* t = new ShadowTask(env, this, c->id, c->fd, Latin1Bytes(info[1]), c->request.field(RequestDecoder::kPassword),
                           info[2].As<Napi::Number>().DoubleValue(), info[6].As<Napi::Number>().Int32Value());
  t->SetPriority(info[3].As<Napi::Boolean>().Value(), info[4].As<Napi::Number>().Uint32Value());
  t->SetShedAfter(info[5].As<Napi::Number>().DoubleValue());
  Napi::Promise p = t->Promise();
  c->task = t;
  c->state = ConnState::kChecking;
  uv_timer_stop(&c->timer);  // the check keeps its own deadline; the backstop resumes if it hands the request back
  t->Submit(HashPool(env));
  return p;
}

void Listener::ShadowFinished(ShadowTask* t) {
  auto it = conns_.find(t->conn_id());
  Conn* c = it != conns_.end() && it->second->task == t ? it->second : nullptr;
  if (c == nullptr) {
    busy_--;  // it outlived its connection (see Close)
    return;
  }
  c->task = nullptr;
  if (t->PoolAnswered()) {
    SetBusy(c, false);
    StartReply(c, t->wire().data(), t->wire().size());
    ReplyWritten(c, t->sent(), t->shut());
  } else {
    c->state = ConnState::kDeciding;  // held back, expired or shed: JavaScript answers
    // The backstop again, in full: what JavaScript still does (a hold, a
    // shed delay) is bounded by deadlines of its own, not by the check's.
    if (decide_timeout_ms_ > 0) uv_timer_start(&c->timer, OnDecideTimeout, decide_timeout_ms_, 0);
  }
}

bool Listener::SendReply(Conn* c, const char* data, size_t len) {
  SetBusy(c, false);
  StartReply(c, data, len);
  // A reply is a few bytes into an empty socket buffer: it almost always
  // goes out at once, and then the half-close can follow at once too,
  // without the write request and the extra loop turns uv_shutdown needs.
  uv_buf_t buf = uv_buf_init(c->reply.data(), static_cast<unsigned>(c->reply.size()));
  int sent = uv_try_write(Stream(c), &buf, 1);
  if (sent == UV_EAGAIN) sent = 0;
  bool shut = sent >= 0 && static_cast<size_t>(sent) == len && shutdown(c->fd, SHUT_WR) == 0;
  return ReplyWritten(c, sent, shut);
}

void Listener::StartReply(Conn* c, const char* data, size_t len) {
  c->reply.assign(data, len);
  c->state = ConnState::kReplying;
  // The request (the password among it) is not needed any more.
  c->request.Wipe();
  uv_timer_start(&c->timer, OnDrainTimeout, drain_timeout_ms_, 0);
}

// After the first attempt to write c->reply: sent bytes (<0: error) and
// whether the half-close followed. The rest goes out through libuv.
bool Listener::ReplyWritten(Conn* c, ssize_t sent, bool shut) {
  if (sent < 0) {
    Close(c);  // EPIPE/ECONNRESET: the client left before reading the reply
    return false;
  }
  if (static_cast<size_t>(sent) == c->reply.size()) {
    if (!shut) {
      Close(c);
      return false;
    }
    c->state = ConnState::kDraining;
    if (c->eof) Close(c);
    return true;
  }
  uv_buf_t rest = uv_buf_init(c->reply.data() + sent, static_cast<unsigned>(c->reply.size() - sent));
  if (uv_write(&c->write_req, Stream(c), &rest, 1, OnWritten) != 0) {
    Close(c);
    return false;
  }
  return true;
}

void Listener::OnBytes(Conn* c, const char* data, size_t n) {
  RequestDecoder::Status s = c->request.Feed(data, n);
  if (s == RequestDecoder::Status::kIncomplete) return;
  if (s == RequestDecoder::Status::kOversize) {
    size_t field = c->request.oversize_field();
    size_t length = c->request.oversize_length();
    c->request.Wipe();
    Reject(c, "NO ", std::string(kFieldNames[field]) + " exceeded MAX_REQ_LEN: " + std::to_string(kMaxReqLen),
           static_cast<int>(field), length);
    return;
  }
  Decoded(c);
}

// A whole request: Cyrus's checks before any mechanism, then JavaScript.
void Listener::Decoded(Conn* c) {
  const RequestDecoder& r = c->request;
  Field login = r.field(RequestDecoder::kLogin);
  Field password = r.field(RequestDecoder::kPassword);
  if (login.size == 0 || password.size == 0) {
    const char* what = login.size == 0 ? "NULL login received" : "NULL password received";
    c->request.Wipe();
    Reject(c, std::string("NO ") + what, what, -1, 0);
    return;
  }
  // The backstop for JavaScript's own deadlines (replaced by the drain
  // deadline when the reply starts).
  if (decide_timeout_ms_ > 0) {
    uv_timer_start(&c->timer, OnDecideTimeout, decide_timeout_ms_, 0);
  } else {
    uv_timer_stop(&c->timer);
  }
  SetBusy(c, true);
  c->state = ConnState::kDeciding;
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  unsigned char fp[kFingerprintBytes];
  Fingerprint(login, r.field(RequestDecoder::kRealm), password, fp);
  // An empty address is no address (Cyrus master sends "" when it has none).
  Field addr = r.field(RequestDecoder::kAddr);
  // The fields go as arguments of their own: one call, no array to build.
  napi_value args[] = {
      Napi::Number::New(env, kRequest),
      Napi::Number::New(env, static_cast<double>(c->id)),
      Latin1(env, login),
      Latin1(env, r.field(RequestDecoder::kService)),
      Latin1(env, r.field(RequestDecoder::kRealm)),
      r.has_addr() && addr.size > 0 ? Latin1(env, addr) : env.Undefined(),
      Napi::Buffer<unsigned char>::Copy(env, fp, sizeof fp),
  };
  explicit_bzero(fp, sizeof fp);
  on_event_.MakeCallback(Value(), 7, args, context_);
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

// Refused before any check: answer, then tell JavaScript (to log it).
void Listener::Reject(Conn* c, const std::string& reply, const std::string& message, int field, size_t length) {
  std::string wire = ShadowTask::CountedString(reply);
  uint64_t id = c->id;
  SendReply(c, wire.data(), wire.size());
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Array a = Napi::Array::New(env, field >= 0 ? 3 : 1);
  a.Set(0u, Napi::String::New(env, message));
  if (field >= 0) {
    a.Set(1u, Napi::String::New(env, kFieldNames[field]));
    a.Set(2u, Napi::Number::New(env, static_cast<double>(length)));
  }
  Emit(kRejected, id, a);
}

// The request never completed: say why (to log it) and close.
void Listener::Incomplete(Conn* c, const char* why, const std::string& detail) {
  uint64_t id = c->id;
  size_t bytes = c->request.received();
  Close(c);
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Array a = Napi::Array::New(env, detail.empty() ? 2 : 3);
  a.Set(0u, Napi::String::New(env, why));
  a.Set(1u, Napi::Number::New(env, static_cast<double>(bytes)));
  if (!detail.empty()) a.Set(2u, Napi::String::New(env, detail));
  Emit(kIncomplete, id, a);
}

Napi::Value Listener::Destroy(const Napi::CallbackInfo& info) {
  Conn* c = Find(info[0]);
  if (c != nullptr) Close(c);
  return info.Env().Undefined();
}

Napi::Value Listener::StopAccepting(const Napi::CallbackInfo& info) {
  if (accepting_ == Accepting::kOpen) {
    accepting_ = Accepting::kStopped;
    uv_close(reinterpret_cast<uv_handle_t*>(&accept_poll_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
    close(listen_fd_);  // this process's copy; the path is JavaScript's to unlink
  }
  return info.Env().Undefined();
}

Napi::Value Listener::DestroyAll(const Napi::CallbackInfo& info) {
  while (!conns_.empty()) Close(conns_.begin()->second);  // Close removes it
  return info.Env().Undefined();
}

Napi::Value Listener::Count(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(conns_.size()));
}

Napi::Value Listener::Busy(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(busy_));
}

// Calls onEvent(kind, id, arg) from a libuv callback; microtasks (a
// promise's reply) run before this returns.
void Listener::Emit(EventKind kind, uint64_t id, napi_value arg) {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  on_event_.MakeCallback(Value(), {Napi::Number::New(env, kind), Napi::Number::New(env, static_cast<double>(id)), arg},
                         context_);
  if (env.IsExceptionPending()) {
    // A bug in the JavaScript handler: report it as an uncaught exception.
    napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }
}

// Our own accept loop instead of uv_listen: when descriptors run out, libuv
// accepts and closes the waiting connections without a word. Here they stay
// in the kernel's backlog, accepting pauses for a moment, and the log says
// why (at most every few seconds while it lasts).
void Listener::OnAcceptable(uv_poll_t* poll, int status, int) {
  auto* self = static_cast<Listener*>(poll->data);
  if (status < 0) {
    self->PauseAccepting(status);
    return;
  }
  for (int i = 0; i < 64; i++) {
    if (self->conns_.size() >= self->max_conns_) {
      // The rest wait in the backlog until a connection closes.
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

void Listener::PauseAccepting(int err) {
  uv_poll_stop(&accept_poll_);
  uv_timer_start(&accept_pause_, OnPauseOver, kAcceptPauseMs, 0);
  if (ShouldLog()) {
    Napi::HandleScope scope(Env());
    Emit(kAcceptError, 0, Napi::String::New(Env(), std::string(uv_err_name(err)) + " " + uv_strerror(err)));
  }
}

// Accept trouble lasts: one line every few seconds, not one per attempt.
bool Listener::ShouldLog() {
  uint64_t now = uv_now(loop_);
  if (last_accept_log_ms_ != 0 && now - last_accept_log_ms_ < kAcceptErrorLogMs) return false;
  last_accept_log_ms_ = now;
  return true;
}

void Listener::OnPauseOver(uv_timer_t* timer) {
  auto* self = static_cast<Listener*>(timer->data);
  if (self->accepting_ == Accepting::kOpen) uv_poll_start(&self->accept_poll_, UV_READABLE, OnAcceptable);
}

void Listener::Adopt(int fd) {
  auto* c = new Conn();
  c->owner = this;
  c->id = ++next_id_;
  uv_pipe_init(loop_, &c->pipe, 0);
  uv_timer_init(loop_, &c->timer);
  c->pipe.data = c;
  c->timer.data = c;
  conns_.emplace(c->id, c);
  if (uv_pipe_open(&c->pipe, fd) != 0) {
    close(fd);
    Close(c);
    return;
  }
  c->fd = fd;
  uv_timer_start(&c->timer, OnReadTimeout, read_timeout_ms_, 0);
  uv_read_start(Stream(c), OnAlloc, OnRead);
}

void Listener::OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  // Reads are handled synchronously, one at a time: one buffer serves all.
  Listener* self = static_cast<Conn*>(handle->data)->owner;
  *buf = uv_buf_init(self->read_buf_, sizeof self->read_buf_);
}

void Listener::OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(stream->data);
  Listener* self = c->owner;
  if (nread > 0) {
    // Past the request, input is discarded, as Cyrus does.
    if (c->state == ConnState::kReading) self->OnBytes(c, buf->base, static_cast<size_t>(nread));
    // The chunk may hold a password: never leave it in the shared buffer.
    explicit_bzero(buf->base, static_cast<size_t>(nread));
    return;
  }
  if (nread == 0 || c->state == ConnState::kClosing) return;
  if (nread == UV_EOF) {
    c->eof = true;
    uv_read_stop(stream);
    switch (c->state) {
      case ConnState::kReading:
        self->Incomplete(c, "eof", "");
        return;
      case ConnState::kChecking:
        // The client may have its answer already, its check waiting to be
        // finished on the loop's next turn: finish it now.
        FinishPoolTasks(self->Env());
        if (c->state == ConnState::kDraining) self->Close(c);
        return;  // otherwise it sent its request and half-closed: still answer
      case ConnState::kDraining:
        self->Close(c);
        return;
      default:
        return;  // kDeciding: still answer; kReplying: OnShutdown closes it
    }
  }
  std::string err = std::string(uv_err_name(static_cast<int>(nread))) + " " + uv_strerror(static_cast<int>(nread));
  if (c->state == ConnState::kReading) {
    self->Incomplete(c, "error", err);
    return;
  }
  bool held = c->state == ConnState::kDeciding;
  uint64_t id = c->id;
  self->Close(c);
  if (held) {
    Napi::HandleScope scope(self->Env());
    self->Emit(kGone, id, Napi::String::New(self->Env(), err));
  }
}

void Listener::OnWritten(uv_write_t* req, int status) {
  auto* c = static_cast<Conn*>(req->handle->data);
  if (c->state == ConnState::kClosing) return;
  if (status < 0) {  // EPIPE/ECONNRESET: the client left before reading the reply
    c->owner->Close(c);
    return;
  }
  if (uv_shutdown(&c->shutdown_req, Stream(c), OnShutdown) != 0) c->owner->Close(c);
}

void Listener::OnShutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<Conn*>(req->handle->data);
  if (c->state == ConnState::kClosing) return;
  c->state = ConnState::kDraining;
  // The client has already closed its side: nothing more to wait for.
  if (status < 0 || c->eof) c->owner->Close(c);
}

void Listener::OnReadTimeout(uv_timer_t* timer) {
  auto* c = static_cast<Conn*>(timer->data);
  if (c->state == ConnState::kReading) c->owner->Incomplete(c, "timeout", "");
}

// JavaScript has held the request too long: close it unanswered, as a
// client that lost its daemon would see, and say so. (It runs only in
// kDeciding: a native check stops it, and its reply replaces it.)
void Listener::OnDecideTimeout(uv_timer_t* timer) {
  auto* c = static_cast<Conn*>(timer->data);
  Listener* self = c->owner;
  if (c->state != ConnState::kDeciding) return;
  uint64_t id = c->id;
  self->Close(c);
  Napi::Env env = self->Env();
  Napi::HandleScope scope(env);
  self->Emit(kOverdue, id, Napi::Number::New(env, static_cast<double>(self->decide_timeout_ms_)));
}

void Listener::OnDrainTimeout(uv_timer_t* timer) {
  auto* c = static_cast<Conn*>(timer->data);
  c->owner->Close(c);
}

void Listener::Close(Conn* c) {
  if (c->state == ConnState::kClosing) return;
  SetBusy(c, false);
  if (c->task != nullptr) {
    c->task->ReleaseSocket();  // before the socket closes; the check still reports its verdict
    c->task = nullptr;
    busy_++;  // until ShadowFinished finds no connection
  }
  c->state = ConnState::kClosing;
  conns_.erase(c->id);
  if (at_limit_ && conns_.size() < max_conns_) {
    at_limit_ = false;
    if (accepting_ == Accepting::kOpen) uv_poll_start(&accept_poll_, UV_READABLE, OnAcceptable);
  }
  c->request.Wipe();
  uv_close(reinterpret_cast<uv_handle_t*>(&c->pipe), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), OnHandleClosed);
}

void Listener::OnHandleClosed(uv_handle_t* handle) {
  auto* c = static_cast<Conn*>(handle->data);
  if (--c->open_handles == 0) {
    explicit_bzero(c->reply.data(), c->reply.size());
    delete c;
  }
}

namespace {

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

Napi::Value SetFingerprintKeyJs(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBuffer() || info[0].As<Napi::Buffer<char>>().Length() < 16) {
    Napi::TypeError::New(info.Env(), "setFingerprintKey(key: Buffer of at least 16 bytes)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto key = info[0].As<Napi::Buffer<char>>();
  SetFingerprintKey(key.Data(), key.Length());
  return info.Env().Undefined();
}

// decodeRequestForTest(chunks: Buffer[]) -> what the listener's decoder
// makes of them: {kind: 'incomplete'} | {kind: 'oversize', field, length} |
// {kind: 'request', login, password, service, realm, clientAddr?}.
Napi::Value DecodeRequestForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "decodeRequestForTest(chunks: Buffer[])").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array chunks = info[0].As<Napi::Array>();
  RequestDecoder d;
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    Napi::Value v = chunks.Get(i);
    if (!v.IsBuffer()) continue;
    auto b = v.As<Napi::Buffer<char>>();
    d.Feed(b.Data(), b.Length());
  }
  Napi::Object o = Napi::Object::New(env);
  switch (d.status()) {
    case RequestDecoder::Status::kIncomplete:
      o.Set("kind", "incomplete");
      break;
    case RequestDecoder::Status::kOversize:
      o.Set("kind", "oversize");
      o.Set("field", kFieldNames[d.oversize_field()]);
      o.Set("length", static_cast<double>(d.oversize_length()));
      break;
    case RequestDecoder::Status::kComplete: {
      o.Set("kind", "request");
      const char* names[] = {"login", "password", "service", "realm", "clientAddr"};
      for (int i = 0; i < 5; i++) {
        if (i == RequestDecoder::kAddr && !d.has_addr()) continue;
        Field f = d.field(static_cast<RequestDecoder::FieldIndex>(i));
        o.Set(names[i], Napi::Buffer<char>::Copy(env, f.data, f.size));
      }
      break;
    }
  }
  o.Set("received", static_cast<double>(d.received()));
  return o;
}

}  // namespace

void InitListener(Napi::Env env, Napi::Object exports) {
  exports.Set("Listener", Listener::Define(env));
  exports.Set("bindUnixSocket", Napi::Function::New(env, BindUnixSocket));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("setFingerprintKey", Napi::Function::New(env, SetFingerprintKeyJs));
  exports.Set("decodeRequestForTest", Napi::Function::New(env, DecodeRequestForTest));
}

}  // namespace saslauthd
