// One shadow check for a connection (the -a shadow mechanism, crypt.cc's
// CheckShadow) on the hashing pool. The pool thread that checks it writes the
// answer straight onto the socket, so the client has it without waiting for
// the event loop, unless JavaScript asked to hold a refusal back (the
// throttle's penalty delay). Everything else is on the main thread, and the
// verdict always reaches JavaScript (a promise) to be logged and counted,
// also when the client left meanwhile.
//
// Exactly one thread writes the answer: the pool thread once the verdict is
// in, or the main thread (JavaScript's reply, or the connection closing). They
// settle it with one compare-and-swap on writer_; the main thread never
// closes the socket while the pool thread may be writing to it.
#pragma once
#include <napi.h>

#include <atomic>
#include <string>

#include "addon.h"
#include "pool.h"
#include "request_decoder.h"

namespace saslauthd {

class Listener;

// Result codes beside ShadowCode's, for a check that never ran.
constexpr int kShadowExpired = -1;  // still queued at the deadline
constexpr int kShadowShed = -2;     // ordinary work shed under load

class ShadowTask : public PoolTask {
 public:
  enum Writer { kUnclaimed, kPoolWriting, kPoolDone, kMain };

  // Answers JavaScript sends itself instead of the hashing thread (a mask):
  // a refusal the throttle delays, a success the cache must commit first.
  enum Hold { kHoldFailure = 1, kHoldSuccess = 2 };

  ShadowTask(Napi::Env env, Listener* owner, uint64_t conn_id, int fd, std::string user, Field password,
             double timeout_ms, int hold);

  void Execute() override;
  void Finish(Napi::Env env, Fate fate) override;
  bool WakeLoop() const override;
  Napi::Promise Promise() { return deferred_.Promise(); }

  // Main thread: take the answer over, unless the pool thread has. True when
  // the main thread is (or already was) the writer.
  bool Claim();
  // Main thread, before the socket closes: the pool thread must not touch it
  // after this. If it is mid-write (two non-blocking calls), wait for that.
  void ReleaseSocket();
  // What the pool thread wrote: the wire bytes, how many went out (<0: -errno),
  // and whether the write side was shut after them.
  bool PoolAnswered() const { return writer_.load() == kPoolDone; }
  const std::string& wire() const { return wire_; }
  ssize_t sent() const { return sent_; }
  bool shut() const { return shut_; }
  uint64_t conn_id() const { return conn_id_; }

  static std::string CountedString(const std::string& text);

 private:
  Listener* owner_;
  uint64_t conn_id_;
  int fd_;
  std::string user_;  // what the mechanism sees (after any -r join)
  SecretBytes password_;
  int hold_;
  ShadowVerdict verdict_{kIncorrectPassword, ""};
  std::string text_;
  std::atomic<int> writer_{kUnclaimed};
  std::string wire_;
  ssize_t sent_ = 0;
  bool shut_ = false;
  Napi::Promise::Deferred deferred_;
};

}  // namespace saslauthd
