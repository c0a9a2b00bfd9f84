// Work pools: threads of our own, fed from a queue, for the blocking work a
// check needs (crypt(3) on the hashing pool, PAM on the PAM pool).
//
// Two queues per pool. Work for credentials that have succeeded before
// ("known-good", decided by the throttle in JavaScript) goes ahead of all
// other work, so a flood of guesses never makes a returning user wait. Other
// work may be shed: left unrun once it has waited longer than a bound, so a
// flood cannot build a backlog that outlives its requests. A task still
// queued at its request's deadline is never run either.
//
// A thread that finishes a task takes the next one itself; results go back
// to JavaScript in batches on the event loop (a check whose client already
// has its answer waits for the loop's next turn instead of waking it).
#pragma once
#include <napi.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace saslauthd {

uint64_t MonotonicNs();

class WorkPool;

// A unit of work. timeout_ms < 0: no deadline.
class PoolTask {
 public:
  // How a task ended: it ran, or it was dropped unrun because its deadline
  // passed (expired) or it waited past the shedding bound (shed).
  enum class Fate { kRan, kExpired, kShed };

  explicit PoolTask(double timeout_ms);
  virtual ~PoolTask() = default;
  PoolTask(const PoolTask&) = delete;
  PoolTask& operator=(const PoolTask&) = delete;

  // Before Submit: known-good work goes first and is never shed; fp lets a
  // later success promote queued work for the same credentials.
  void SetPriority(bool high, uint32_t fp) {
    high_ = high;
    fp_ = fp;
  }
  // Before Submit: ordinary work that has waited longer than this is shed
  // (0: never).
  void SetShedAfter(double ms) { shed_after_ns_ = ms <= 0 ? 0 : static_cast<uint64_t>(ms * 1e6); }

  // Queues the task; the pool owns it from here and deletes it after Finish.
  void Submit(WorkPool* pool);

  // On a pool thread.
  virtual void Execute() = 0;
  // On the main thread, inside a callback scope, after Execute or instead of it.
  virtual void Finish(Napi::Env env, Fate fate) = 0;
  // On the pool thread, after Execute: must the event loop be woken for
  // Finish now? False lets Finish wait for the loop's next turn.
  virtual bool WakeLoop() const { return true; }

  Fate fate() const { return fate_; }

 private:
  friend class WorkPool;
  uint64_t deadline_ns_;  // CLOCK_MONOTONIC; 0 = none
  uint64_t enqueued_ns_ = 0;
  uint64_t shed_after_ns_ = 0;
  bool high_ = false;
  uint32_t fp_ = 0;
  Fate fate_ = Fate::kRan;
};

// A task that settles a promise: Result's value, or a rejection with code
// ETIMEDOUT (expired) or ESHED (shed).
class PoolJob : public PoolTask {
 public:
  PoolJob(Napi::Env env, double timeout_ms);
  Napi::Promise Promise() { return deferred_.Promise(); }
  // On the main thread: the promise's value.
  virtual Napi::Value Result(Napi::Env env) = 0;

 private:
  void Finish(Napi::Env env, Fate fate) override;
  Napi::Promise::Deferred deferred_;
};

class WorkPool {
 public:
  WorkPool(Napi::Env env, const char* thread_name, unsigned threads);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void Submit(PoolTask* task);
  // Queued ordinary work for these credentials becomes known-good work.
  size_t Promote(uint32_t fp);
  // Main thread: finish every completed task now.
  void FinishDone();

  unsigned threads() const { return static_cast<unsigned>(threads_.size()); }
  // Tasks waiting, by queue; how long the oldest ordinary one has waited.
  size_t QueuedHigh();
  size_t QueuedNormal();
  double OldestNormalWaitMs();
  size_t Running();
  // Tasks submitted and not yet finished on the main thread.
  size_t Pending() const { return pending_; }

  // The process's CPUs (what os.availableParallelism() reports).
  static unsigned UsableCpus();

 private:
  void Run();
  PoolTask* Next(uint64_t now);  // under mu_
  void Done(PoolTask* task, bool wake);
  void ArmSweep();
  static void OnAsync(uv_async_t* handle);
  static void OnCheck(uv_check_t* handle);
  static void OnSweep(uv_timer_t* handle);
  static void Shutdown(void* arg);

  Napi::Env env_;
  Napi::AsyncContext context_;
  std::string name_;
  uv_async_t async_;
  uv_check_t check_;
  uv_timer_t sweep_;
  bool sweeping_ = false;  // main thread
  size_t pending_ = 0;     // main thread
  size_t running_ = 0;     // under mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PoolTask*> high_;
  std::deque<PoolTask*> normal_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::mutex done_mu_;
  std::vector<PoolTask*> done_;
  std::atomic<size_t> done_count_{0};
};

// The process's pools (created on first use by the main thread).
WorkPool* HashPool(Napi::Env env);
WorkPool* PamPool(Napi::Env env);
// Main thread: finish the hashing pool's completed tasks now instead of on
// the loop's next turn.
void FinishPoolTasks(Napi::Env env);
// PAM threads, set before the first PAM check (default: 8).
void SetPamThreads(unsigned n);

void InitPool(Napi::Env env, Napi::Object exports);

}  // namespace saslauthd
