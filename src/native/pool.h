// The hashing pool: one thread per core, fed from a queue, for crypt(3).
//
// Hashes used to go through the libuv thread pool, one at a time per slot,
// with the main thread handing out the next one as each finished; on a busy
// main thread a core sat idle for every hand-over (10-20 % of the machine
// with sha512). Here a thread that finishes a hash takes the next one from
// the queue itself, and results go back to JavaScript in batches. The libuv
// pool stays free for PAM, fs and DNS.
#pragma once
#include <napi.h>

#include <cstdint>

namespace saslauthd {

class PoolJob {
 public:
  // timeout_ms < 0: no deadline. A job still queued when its deadline passes
  // is never run: its promise rejects with code ETIMEDOUT (the authenticator
  // has answered by then), so a backlog cannot outlive its requests.
  PoolJob(Napi::Env env, double timeout_ms);
  virtual ~PoolJob() = default;
  PoolJob(const PoolJob&) = delete;
  PoolJob& operator=(const PoolJob&) = delete;

  Napi::Promise Promise() { return deferred_.Promise(); }
  // Queues the job; the pool owns it from here.
  void Submit();

  // On a pool thread.
  virtual void Execute() = 0;
  // On the main thread: the promise's value.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  friend class HashPool;
  Napi::Promise::Deferred deferred_;
  uint64_t deadline_ns_;  // CLOCK_MONOTONIC; 0 = none
  bool expired_ = false;
};

void InitPool(Napi::Env env, Napi::Object exports);

}  // namespace saslauthd
