// See pool.h.
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace saslauthd {

namespace {

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// The CPUs this process may run on (what os.availableParallelism() reports).
unsigned UsableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

}  // namespace

class HashPool {
 public:
  static HashPool* Get(Napi::Env env) {
    if (instance_ == nullptr) {
      Napi::HandleScope scope(env);  // callers may be outside JavaScript (a libuv callback)
      instance_ = new HashPool(env);
    }
    return instance_;
  }

  static unsigned Threads() { return UsableCpus(); }

  void Submit(PoolTask* job) {
    if (pending_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    {
      std::lock_guard<std::mutex> lock(mu_);
      todo_.push_back(job);
    }
    cv_.notify_one();
  }

 private:
  explicit HashPool(Napi::Env env) : env_(env), context_(env, "saslauthd.hash") {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    uv_async_init(loop, &async_, OnAsync);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));  // only pending jobs keep the process alive
    uv_check_init(loop, &check_);
    check_.data = this;
    uv_check_start(&check_, OnCheck);
    uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
    for (unsigned i = 0; i < Threads(); i++) threads_.emplace_back([this] { Run(); });
    napi_add_env_cleanup_hook(env, Shutdown, this);
  }

  void Run() {
    pthread_setname_np(pthread_self(), kThreadName);  // what top -H and /proc/<pid>/task/*/comm show
    for (;;) {
      PoolTask* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !todo_.empty(); });
        if (stop_) return;
        job = todo_.front();
        todo_.pop_front();
        running_++;
      }
      if (job->deadline_ns_ != 0 && MonotonicNs() > job->deadline_ns_) {
        job->expired_ = true;
      } else {
        job->Execute();
      }
      bool wake = job->expired_ || job->WakeLoop();
      {
        std::lock_guard<std::mutex> lock(done_mu_);
        done_.push_back(job);
        done_count_.store(done_.size());
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        running_--;
        // A job that needs nothing soon is finished on the loop's next turn
        // (OnCheck), which the next connection or its client's close brings;
        // the last one of a burst wakes the loop so nothing waits for long.
        // Decided after the push: a thread that finishes later wakes the
        // loop for this job too.
        if (todo_.empty() && running_ == 0) wake = true;
      }
      if (wake) uv_async_send(&async_);
    }
  }

  static void OnAsync(uv_async_t* handle) { static_cast<HashPool*>(handle->data)->FinishDone(); }

  static void OnCheck(uv_check_t* handle) {
    auto* self = static_cast<HashPool*>(handle->data);
    if (self->done_count_.load() != 0) self->FinishDone();
  }

  // Main thread: finish every completed task in one callback scope, so the
  // continuations (the replies) run before returning to the loop. Also
  // called by the listener when it needs a result before the loop turns.
 public:
  void FinishDone() {
    std::vector<PoolTask*> done;
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      done.swap(done_);
      done_count_.store(0);
    }
    if (done.empty()) return;
    Napi::HandleScope scope(env_);
    Napi::CallbackScope callback_scope(env_, context_);
    for (PoolTask* job : done) {
      job->Finish(env_, job->expired_);
      delete job;
      if (--pending_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    }
  }

 private:
  static void Shutdown(void* arg) {
    auto* self = static_cast<HashPool*>(arg);
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->stop_ = true;
    }
    self->cv_.notify_all();
    for (auto& t : self->threads_) t.join();
    // The loop is being torn down: jobs still queued are dropped with it.
    uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->check_), nullptr);
  }

  static constexpr const char* kThreadName = "saslauthd-hash";
  static HashPool* instance_;
  Napi::Env env_;
  Napi::AsyncContext context_;
  uv_async_t async_;
  uv_check_t check_;
  size_t pending_ = 0;  // main thread only
  size_t running_ = 0;  // under mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PoolTask*> todo_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::mutex done_mu_;
  std::vector<PoolTask*> done_;
  std::atomic<size_t> done_count_{0};
};

HashPool* HashPool::instance_ = nullptr;

PoolTask::PoolTask(double timeout_ms)
    : deadline_ns_(timeout_ms < 0 ? 0 : MonotonicNs() + static_cast<uint64_t>(timeout_ms * 1e6)) {}

void PoolTask::Submit(Napi::Env env) { HashPool::Get(env)->Submit(this); }

void FinishPoolTasks(Napi::Env env) { HashPool::Get(env)->FinishDone(); }

PoolJob::PoolJob(Napi::Env env, double timeout_ms) : PoolTask(timeout_ms), deferred_(Napi::Promise::Deferred::New(env)) {}

void PoolJob::Finish(Napi::Env env, bool expired) {
  if (expired) {
    Napi::Error e = Napi::Error::New(env, "hash not started before the request's deadline");
    e.Set("code", Napi::String::New(env, "ETIMEDOUT"));
    deferred_.Reject(e.Value());
  } else {
    deferred_.Resolve(Result(env));
  }
}

namespace {

// SCHED_BATCH for the calling thread and every thread it creates later (the
// hashing pool, libuv's pool): a thread woken by I/O then waits for the
// running one's time slice instead of preempting it at once. With the CPUs
// saturated by hashes, the event loop wakes less often and handles more per
// wake (about 5 % more sha512 throughput on 2 cores); on an idle CPU nothing
// changes. A policy the admin chose (chrt, CPUSchedulingPolicy=) is kept.
// Returns the policy in force: "batch", "other", "idle", "fifo" or "rr".
Napi::Value PreferBatchScheduling(const Napi::CallbackInfo& info) {
  int policy = sched_getscheduler(0);
  if (policy == SCHED_OTHER) {
    struct sched_param param = {};
    if (sched_setscheduler(0, SCHED_BATCH, &param) == 0) policy = SCHED_BATCH;
  }
  const char* name = policy == SCHED_BATCH  ? "batch"
                     : policy == SCHED_IDLE ? "idle"
                     : policy == SCHED_FIFO ? "fifo"
                     : policy == SCHED_RR   ? "rr"
                                            : "other";
  return Napi::String::New(info.Env(), name);
}

}  // namespace

void InitPool(Napi::Env env, Napi::Object exports) {
  exports.Set("hashThreads", Napi::Number::New(env, HashPool::Threads()));
  exports.Set("preferBatchScheduling", Napi::Function::New(env, PreferBatchScheduling));
}

}  // namespace saslauthd
