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
//     .serveShadow(concatRealm, timeoutMs, timeoutReply, logSuccess)
//                        answer requests natively with the shadow mechanism
//     .count             open connections
//     .busy              native checks not yet answered
//   onEvent(kind, id, arg): kind 0 data (arg: Buffer), 1 EOF while tracked
//   (arg: bytes received), 2 read deadline while tracked (arg: bytes),
//   3 closed while tracked, 4 connection error (arg: "CODE message"),
//   5 accept error (arg: "CODE message"; out of descriptors, accepting pauses
//   for 100 ms and the connections wait in the backlog), 6 maxConnections
//   open: accepting waits for one to close (arg: maxConnections), 7 a native
//   shadow result (arg: [login, service, realm, address | undefined, code,
//   reply text, ms]; code -1: the deadline passed; successes only with
//   logSuccess, as they are logged at debug only), 8 a request refused before
//   any check (arg: [message, field?, length?]).
//
// Native shadow mode: without a credential cache, shadow needs nothing from
// JavaScript per request, and on a hash-bound load every microsecond the main
// thread spends is one the hashing threads lose. The request is decoded here
// (the same rules as src/protocol/decoder.ts and the authenticator's checks),
// checked on the hashing pool, answered here, and JavaScript gets only the
// result to log. Data events are not sent in this mode; End and ReadTimeout
// still are for a connection whose request is incomplete.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <unordered_map>

#include "addon.h"
#include "pool.h"

namespace saslauthd {
namespace {

enum EventKind {
  kData = 0,
  kEnd = 1,
  kReadTimeout = 2,
  kClosed = 3,
  kConnError = 4,
  kAcceptError = 5,
  kConnLimit = 6,
  kResult = 7,
  kRejected = 8,
};

// src/protocol/decoder.ts: MAX_REQ_LEN, the field names, and the most a
// request can need buffered (four fields and the optional address).
constexpr size_t kMaxReqLen = 256;
constexpr const char* kFieldNames[] = {"login", "password", "service", "realm"};
constexpr size_t kMaxRequestBytes = 5 * (2 + kMaxReqLen);
constexpr int kTimedOut = -1;  // a result code beside ShadowCode's

class Listener;

// One native shadow check. The pool thread runs Execute: the check, then the
// reply straight onto the socket, so the client has its answer without
// waiting for the event loop. Everything else is on the main thread. It
// outlives its connection if the client goes: the result is still logged, as
// for any other mechanism.
//
// Exactly one thread writes the reply: the pool thread once the verdict is
// in, or the main thread when the deadline passes or the connection closes
// first. They settle it with one compare-and-swap on writer_; the main thread
// never closes the socket while the pool thread may be writing to it.
class ShadowTask : public PoolTask {
 public:
  enum Writer { kUnclaimed, kPoolWriting, kPoolDone, kMain };

  ShadowTask(Listener* owner, uint64_t conn_id, int fd, double timeout_ms, std::string user, const char* pw,
             size_t pw_len)
      : PoolTask(timeout_ms), owner_(owner), conn_id_(conn_id), fd_(fd), user_(std::move(user)), password_(pw, pw_len) {}

  void Execute() override {
    verdict_ = CheckShadow(user_.c_str(), password_.c_str());
    text_ = ShadowReplyText(verdict_);
    int expected = kUnclaimed;
    if (!writer_.compare_exchange_strong(expected, kPoolWriting)) return;
    wire_ = CountedString(text_);
    // A few bytes into a socket nobody else writes to: never blocks.
    ssize_t n = send(fd_, wire_.data(), wire_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    sent_ = n < 0 ? (errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno) : n;
    shut_ = static_cast<size_t>(n) == wire_.size() && shutdown(fd_, SHUT_WR) == 0;
    writer_.store(kPoolDone);
  }
  void Finish(Napi::Env env, bool expired) override;
  // Once the client has its whole answer, only the log and the connection's
  // cleanup remain: no need to wake the loop for them.
  bool WakeLoop() const override {
    return writer_.load() != kPoolDone || static_cast<size_t>(sent_) != wire_.size() || !shut_;
  }

  // Main thread: take the reply over, unless the pool thread has. True when
  // the main thread is (or already was) the writer.
  bool Claim() {
    int expected = kUnclaimed;
    return writer_.compare_exchange_strong(expected, kMain) || expected == kMain;
  }

  // Main thread, before the socket closes: the pool thread must not touch it
  // after this. If it is mid-write (two non-blocking calls), wait for that.
  void ReleaseSocket() {
    if (Claim()) return;
    while (writer_.load() == kPoolWriting) sched_yield();
  }

  static std::string CountedString(const std::string& text) {
    std::string wire(2, '\0');
    wire[0] = static_cast<char>((text.size() >> 8) & 0xff);
    wire[1] = static_cast<char>(text.size() & 0xff);
    return wire + text;
  }

  Listener* owner_;
  uint64_t conn_id_;
  int fd_;
  std::string user_;  // after the -r join: what the mechanism and the log see
  SecretBytes password_;
  ShadowVerdict verdict_{0, ""};
  std::string text_;
  std::atomic<int> writer_{kUnclaimed};
  std::string wire_;  // what the pool thread wrote: sent_ bytes of it (<0: -errno), then shut_ the write side
  ssize_t sent_ = 0;
  bool shut_ = false;
  std::string service_, realm_, addr_;
  bool has_addr_ = false;
  uint64_t started_ns_ = 0;
  bool logged_ = false;  // main thread: the result has been logged (and busy_ counted down)
};

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
  // Native shadow mode: the request so far (never reallocated, so no stray
  // copy of a password is left behind), then the check answering it.
  std::string in;
  ShadowTask* task = nullptr;
  int fd = -1;  // the accepted socket, owned by pipe
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
                        InstanceMethod<&Listener::ServeShadow>("serveShadow"),
                        InstanceAccessor<&Listener::Count>("count"), InstanceAccessor<&Listener::Busy>("busy")});
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
    if (c == nullptr || !c->tracked || c->task != nullptr || !info[1].IsBuffer()) return Napi::Boolean::New(env, false);
    auto body = info[1].As<Napi::Buffer<char>>();
    return Napi::Boolean::New(env, SendReply(c, body.Data(), body.Length()));
  }

  // Write the reply, half-close, then discard input until EOF or the drain
  // deadline. False when the client has gone.
  bool SendReply(Conn* c, const char* data, size_t len) {
    StartReply(c, data, len);
    // A reply is a few bytes into an empty socket buffer: it almost always
    // goes out at once, and then the half-close can follow at once too,
    // without the write request and the extra loop turns uv_shutdown needs.
    int sent = TryWrite(c);
    bool shut = sent >= 0 && static_cast<size_t>(sent) == len && ShutdownWrite(c);
    return ReplyWritten(c, sent, shut);
  }

  void StartReply(Conn* c, const char* data, size_t len) {
    c->reply.assign(data, len);
    c->tracked = false;
    uv_timer_start(&c->timer, OnDrainTimeout, drain_timeout_ms_, 0);
  }

  static bool ShutdownWrite(Conn* c) { return shutdown(c->fd, SHUT_WR) == 0; }

  // After the first attempt to write c->reply: sent bytes (<0: error) and
  // whether the half-close followed. The rest goes out through libuv.
  bool ReplyWritten(Conn* c, ssize_t sent, bool shut) {
    if (sent < 0) {
      Close(c);  // EPIPE/ECONNRESET: the client left before reading the reply
      return false;
    }
    if (static_cast<size_t>(sent) == c->reply.size()) {
      if (!shut) {
        Close(c);
        return false;
      }
      c->shutdown_done = true;
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

  bool SendText(Conn* c, const std::string& text) {
    std::string wire = ShadowTask::CountedString(text);
    return SendReply(c, wire.data(), wire.size());
  }

  Napi::Value ServeShadow(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsBoolean() || !info[1].IsNumber() || !info[2].IsString() ||
        !info[3].IsBoolean()) {
      Napi::TypeError::New(env,
                           "serveShadow(concatRealm: boolean, timeoutMs: number, timeoutReply: string, "
                           "logSuccess: boolean)")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    shadow_ = true;
    concat_realm_ = info[0].As<Napi::Boolean>().Value();
    auth_timeout_ms_ = info[1].As<Napi::Number>().Int64Value();
    timeout_reply_ = info[2].As<Napi::String>().Utf8Value();
    log_success_ = info[3].As<Napi::Boolean>().Value();
    return env.Undefined();
  }

  Napi::Value Busy(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(busy_)); }

 public:
  // The pool thread is done with t: it has answered the client, or the
  // main thread took the reply over (deadline, client gone).
  void ShadowChecked(ShadowTask* t) {
    if (t->logged_) return;
    Conn* c = TaskConn(t);
    if (c != nullptr) {
      c->task = nullptr;
      StartReply(c, t->wire_.data(), t->wire_.size());
      ReplyWritten(c, t->sent_, t->shut_);
    }
    LogShadow(t, t->verdict_.code, t->text_);
  }

  // The deadline passed: answer it here unless the pool thread is answering.
  void ShadowTimedOut(ShadowTask* t) {
    if (t->logged_ || !t->Claim()) return;
    Conn* c = TaskConn(t);
    if (c != nullptr) {
      c->task = nullptr;
      SendText(c, timeout_reply_);
    }
    LogShadow(t, kTimedOut, timeout_reply_);
  }

 private:
  // The connection t answers, if it is still open.
  Conn* TaskConn(ShadowTask* t) {
    auto it = conns_.find(t->conn_id_);
    return it != conns_.end() && it->second->task == t ? it->second : nullptr;
  }

  void LogShadow(ShadowTask* t, int code, const std::string& text) {
    t->logged_ = true;
    busy_--;
    if (code == kOk && !log_success_) return;
    double ms = static_cast<double>(uv_hrtime() - t->started_ns_) / 1e6;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array r = Napi::Array::New(env, 7);
    r.Set(0u, Napi::String::New(env, t->user_));
    r.Set(1u, Napi::String::New(env, t->service_));
    r.Set(2u, Napi::String::New(env, t->realm_));
    r.Set(3u, t->has_addr_ ? Napi::String::New(env, t->addr_) : env.Undefined());
    r.Set(4u, Napi::Number::New(env, code));
    r.Set(5u, Napi::String::New(env, text));
    r.Set(6u, Napi::Number::New(env, ms));
    Emit(kResult, static_cast<double>(t->conn_id_), r);
  }

  // Native shadow mode: buffer the request, then answer it (decoder.ts and
  // Authenticator.handle's rules, in their order).
  void ShadowData(Conn* c, const char* data, size_t n) {
    if (c->task != nullptr) return;  // a request is being answered: discard, as Cyrus does
    if (c->in.capacity() < kMaxRequestBytes) c->in.reserve(kMaxRequestBytes);
    // Past the most a request can need, bytes are ignored anyway.
    c->in.append(data, std::min(n, kMaxRequestBytes - c->in.size()));
    const std::string& in = c->in;
    size_t off[5], len[5], pos = 0;
    for (int i = 0; i < 4; i++) {
      if (in.size() < pos + 2) return;
      size_t n_i = (static_cast<size_t>(static_cast<unsigned char>(in[pos])) << 8) |
                   static_cast<unsigned char>(in[pos + 1]);
      if (n_i > kMaxReqLen) {
        WipeRequest(c);
        Reject(c, "NO ", std::string(kFieldNames[i]) + " exceeded MAX_REQ_LEN: " + std::to_string(kMaxReqLen),
               kFieldNames[i], n_i);
        return;
      }
      if (in.size() < pos + 2 + n_i) return;
      off[i] = pos + 2;
      len[i] = CStringLength(in, off[i], n_i);
      pos += 2 + n_i;
    }
    // Upstream master's 5th field, the client address: only if already here.
    bool has_addr = false;
    if (in.size() >= pos + 2) {
      size_t n_a = (static_cast<size_t>(static_cast<unsigned char>(in[pos])) << 8) |
                   static_cast<unsigned char>(in[pos + 1]);
      if (n_a <= kMaxReqLen && in.size() >= pos + 2 + n_a) {
        off[4] = pos + 2;
        len[4] = CStringLength(in, off[4], n_a);
        has_addr = len[4] > 0;
      }
    }
    if (len[0] == 0 || len[1] == 0) {
      WipeRequest(c);
      const char* what = len[0] == 0 ? "NULL login received" : "NULL password received";
      Reject(c, std::string("NO ") + what, what, nullptr, 0);
      return;
    }
    std::string user = in.substr(off[0], len[0]);
    std::string realm = in.substr(off[3], len[3]);
    if (concat_realm_ && !realm.empty()) user += "@" + realm;
    auto* t = new ShadowTask(this, static_cast<uint64_t>(c->id), c->fd, static_cast<double>(auth_timeout_ms_),
                             std::move(user), in.data() + off[1], len[1]);
    t->service_ = in.substr(off[2], len[2]);
    t->realm_ = std::move(realm);
    if (has_addr) {
      t->addr_ = in.substr(off[4], len[4]);
      t->has_addr_ = true;
    }
    t->started_ns_ = uv_hrtime();
    WipeRequest(c);
    c->task = t;
    busy_++;
    uv_timer_start(&c->timer, OnAuthTimeout, auth_timeout_ms_, 0);
    t->Submit(Env());
  }

  // Cyrus copies each field into a C string: an embedded NUL ends it.
  static size_t CStringLength(const std::string& in, size_t off, size_t n) {
    const void* nul = memchr(in.data() + off, '\0', n);
    return nul == nullptr ? n : static_cast<size_t>(static_cast<const char*>(nul) - (in.data() + off));
  }

  static void WipeRequest(Conn* c) {
    explicit_bzero(&c->in[0], c->in.size());
    c->in.clear();
  }

  // Refused before any check: answer, then log at error as the authenticator does.
  void Reject(Conn* c, const std::string& reply, const std::string& message, const char* field, size_t length) {
    SendText(c, reply);
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array r = Napi::Array::New(env, field != nullptr ? 3 : 1);
    r.Set(0u, Napi::String::New(env, message));
    if (field != nullptr) {
      r.Set(1u, Napi::String::New(env, field));
      r.Set(2u, Napi::Number::New(env, static_cast<double>(length)));
    }
    Emit(kRejected, c->id, r);
  }

  static void OnAuthTimeout(uv_timer_t* timer) {
    auto* c = static_cast<Conn*>(timer->data);
    if (c->task != nullptr) FinishPoolTasks(c->owner->Env());  // it may be answered already
    if (c->task != nullptr) c->owner->ShadowTimedOut(c->task);
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
    c->fd = fd;
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
      if (c->tracked && self->shadow_) {
        self->ShadowData(c, buf->base, static_cast<size_t>(nread));
      } else if (c->tracked) {  // Close() clears it
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
      // The client may have its answer already, its check waiting to be
      // finished on the loop's next turn: finish it now.
      if (c->task != nullptr) FinishPoolTasks(self->Env());
      if (c->closing) return;
      if (c->task != nullptr) return;  // it sent its request and half-closed: still answer
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
    if (c->tracked && c->task == nullptr) c->owner->EmitNumber(kReadTimeout, c);  // JavaScript destroys it, or is still working
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
    if (c->task != nullptr) {
      c->task->ReleaseSocket();  // before the socket closes; the check still logs its result
      c->task = nullptr;
    }
    if (!c->in.empty()) WipeRequest(c);
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
  bool shadow_ = false;
  bool concat_realm_ = false;
  bool log_success_ = false;
  std::string timeout_reply_;
  int64_t auth_timeout_ms_ = 0;
  size_t busy_ = 0;
  std::unordered_map<uint64_t, Conn*> conns_;
  char read_buf_[65536];
};

void ShadowTask::Finish(Napi::Env, bool expired) {
  if (expired) {
    owner_->ShadowTimedOut(this);  // never run: the deadline passed while it was queued
  } else {
    owner_->ShadowChecked(this);
  }
}

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
