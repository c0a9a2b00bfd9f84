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

// A unit of work for the pool. timeout_ms < 0: no deadline. A task still
// queued when its deadline passes is never run (its request has been
// answered by then), so a backlog cannot outlive its requests.
class PoolTask {
 public:
  explicit PoolTask(double timeout_ms);
  virtual ~PoolTask() = default;
  PoolTask(const PoolTask&) = delete;
  PoolTask& operator=(const PoolTask&) = delete;

  // Queues the task; the pool owns it from here and deletes it after Finish.
  void Submit(Napi::Env env);

  // On a pool thread.
  virtual void Execute() = 0;
  // On the main thread, inside a callback scope: after Execute, or instead
  // of it when the deadline passed first (expired).
  virtual void Finish(Napi::Env env, bool expired) = 0;
  // On the pool thread, after Execute: must the event loop be woken for
  // Finish now? False lets Finish wait for the loop's next turn (at most
  // until the pool runs out of work), saving a wake-up per task.
  virtual bool WakeLoop() const { return true; }

 private:
  friend class HashPool;
  uint64_t deadline_ns_;  // CLOCK_MONOTONIC; 0 = none
  bool expired_ = false;
};

// A task that settles a promise: Result's value, or code ETIMEDOUT if expired.
class PoolJob : public PoolTask {
 public:
  PoolJob(Napi::Env env, double timeout_ms);
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Submit() { PoolTask::Submit(deferred_.Env()); }
  // On the main thread: the promise's value.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Finish(Napi::Env env, bool expired) override;
  Napi::Promise::Deferred deferred_;
};

// Main thread: finish the completed tasks now instead of on the loop's next turn.
void FinishPoolTasks(Napi::Env env);

void InitPool(Napi::Env env, Napi::Object exports);

}  // namespace saslauthd
