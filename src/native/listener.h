// The daemon's front door, in libuv on Node's own event loop: accept, read,
// decode (request_decoder.h: the only decoder), the rules Cyrus applies
// before any mechanism (the 256-byte limit, NULL login/password), the
// deadlines, the reply, the half-close and the discard-until-EOF that
// follows. JavaScript gets one decoded request per connection (login,
// service, realm, client address as the bytes the client sent, and the
// credentials' fingerprint; the password only when it asks) and answers
// with one reply, or hands the check to the native shadow mechanism
// (shadow_task.h), whose hashing thread writes the answer itself.
//
//   bindUnixSocket(path, backlog) -> fd     socket(2) + bind(2) + listen(2)
//   new Listener(onEvent, readTimeoutMs, drainTimeoutMs, maxConnections, decideTimeoutMs)
//     .open(fd)              accept on a listening socket (ours, or inherited)
//     .reply(id, bytes)      write, shutdown(SHUT_WR), discard input until EOF
//     .password(id)          a copy of the request's password (the caller wipes it)
//     .checkShadow(id, user, timeoutMs, high, fp, shedAfterMs, hold)
//                            -> Promise<[code, text, answered]>
//     .destroy(id)           close now
//     .stopAccepting()       stop, and close this process's listening descriptor
//     .destroyAll()
//     .count                 open connections
//     .busy                  requests handed to JavaScript or a check and not answered
//   setFingerprintKey(buffer)
//
// onEvent(kind, id, ...args), kind (ListenerEvent in binding.ts):
//   0 request    login, service, realm, address | undefined, fingerprint
//                (five arguments; strings are Latin-1: one character per
//                byte received)
//   1 rejected   [message, field?, length?]: answered before any check
//                (every other kind has one argument)
//   2 incomplete [why: 'eof' | 'timeout' | 'error', bytes, detail?]: closed
//                before the request was complete
//   3 accept error "CODE message" (out of descriptors, accepting pauses 100 ms)
//   4 connection limit reached (arg: the limit)
//   5 gone: a request handed to JavaScript lost its client before the answer
//   6 overdue: JavaScript held a request past decideTimeoutMs without
//     answering it (a bug: every wait there has its own deadline, well
//     inside this one); the connection was closed unanswered (arg: the ms)
#pragma once
#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <unordered_map>

#include "addon.h"
#include "request_decoder.h"

namespace saslauthd {

class ShadowTask;
class Listener;

// A connection's life, in order (kClosing can follow any of them).
enum class ConnState {
  kReading,   // the request is not complete; the read deadline runs
  kDeciding,  // decoded and handed to JavaScript, which will reply or start a check; the decide deadline runs
  kChecking,  // a native shadow check owns the reply
  kReplying,  // the reply is being written
  kDraining,  // answered and write side shut: discard input until EOF or the drain deadline
  kClosing,
};

struct Conn {
  uv_pipe_t pipe;
  uv_timer_t timer;  // the read deadline, the decide deadline, then the drain deadline
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  Listener* owner;
  uint64_t id;
  int fd = -1;  // the accepted socket, owned by pipe
  ConnState state = ConnState::kReading;
  bool eof = false;  // the client closed its side
  int open_handles = 2;
  RequestDecoder request;
  std::string reply;
  ShadowTask* task = nullptr;  // kChecking
};

class Listener : public Napi::ObjectWrap<Listener> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Listener(const Napi::CallbackInfo& info);

  // For ShadowTask, on the main thread. The task's verdict is in (or it was
  // dropped unrun): finish what the pool thread started, if the client is
  // still there.
  void ShadowFinished(ShadowTask* task);

 private:
  enum EventKind {
    kRequest = 0,
    kRejected = 1,
    kIncomplete = 2,
    kAcceptError = 3,
    kConnLimit = 4,
    kGone = 5,
    kOverdue = 6,
  };

  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Reply(const Napi::CallbackInfo& info);
  Napi::Value Password(const Napi::CallbackInfo& info);
  Napi::Value CheckShadow(const Napi::CallbackInfo& info);
  Napi::Value Destroy(const Napi::CallbackInfo& info);
  Napi::Value StopAccepting(const Napi::CallbackInfo& info);
  Napi::Value DestroyAll(const Napi::CallbackInfo& info);
  Napi::Value Count(const Napi::CallbackInfo& info);
  Napi::Value Busy(const Napi::CallbackInfo& info);

  Conn* Find(const Napi::Value& id);
  void Adopt(int fd);
  void OnBytes(Conn* c, const char* data, size_t n);
  void Decoded(Conn* c);
  void Reject(Conn* c, const std::string& reply, const std::string& message, int field, size_t length);
  void Incomplete(Conn* c, const char* why, const std::string& detail);

  bool SendReply(Conn* c, const char* data, size_t len);
  void StartReply(Conn* c, const char* data, size_t len);
  bool ReplyWritten(Conn* c, ssize_t sent, bool shut);
  void Close(Conn* c);
  void SetBusy(Conn* c, bool busy);

  void Emit(EventKind kind, uint64_t id, napi_value arg);
  void PauseAccepting(int err);
  bool ShouldLog();

  static uv_stream_t* Stream(Conn* c) { return reinterpret_cast<uv_stream_t*>(&c->pipe); }
  static void OnAcceptable(uv_poll_t* poll, int status, int events);
  static void OnPauseOver(uv_timer_t* timer);
  static void OnAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void OnWritten(uv_write_t* req, int status);
  static void OnShutdown(uv_shutdown_t* req, int status);
  static void OnReadTimeout(uv_timer_t* timer);
  static void OnDecideTimeout(uv_timer_t* timer);
  static void OnDrainTimeout(uv_timer_t* timer);
  static void OnHandleClosed(uv_handle_t* handle);
  static void OnAcceptHandleClosed(uv_handle_t* handle);

  static constexpr uint64_t kAcceptPauseMs = 100;
  static constexpr uint64_t kAcceptErrorLogMs = 5000;

  Napi::FunctionReference on_event_;
  Napi::AsyncContext context_;
  uv_loop_t* loop_ = nullptr;
  uv_poll_t accept_poll_;
  uv_timer_t accept_pause_;
  int listen_fd_ = -1;
  // One way: open() once; stopAccepting() closes the handles for good.
  enum class Accepting { kNever, kOpen, kStopped } accepting_ = Accepting::kNever;
  bool at_limit_ = false;
  int closing_handles_ = 0;  // a failed open() waits for these before Unref()
  uint64_t last_accept_log_ms_ = 0;
  size_t max_conns_ = 1;
  int64_t read_timeout_ms_ = 0;
  int64_t drain_timeout_ms_ = 0;
  int64_t decide_timeout_ms_ = 0;  // 0: none
  uint64_t next_id_ = 0;
  size_t busy_ = 0;  // connections in kDeciding or kChecking, plus checks that outlived theirs
  std::unordered_map<uint64_t, Conn*> conns_;
  char read_buf_[65536];

  friend class ShadowTask;
};

void InitListener(Napi::Env env, Napi::Object exports);

}  // namespace saslauthd
