// See pool.h.
#include "pool.h"

#include <sched.h>
#include <time.h>
#include <uv.h>

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
    if (instance_ == nullptr) instance_ = new HashPool(env);
    return instance_;
  }

  static unsigned Threads() { return UsableCpus(); }

  void Submit(PoolJob* job) {
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
    uv_async_init(loop, &async_, OnDone);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));  // only pending jobs keep the process alive
    for (unsigned i = 0; i < Threads(); i++) threads_.emplace_back([this] { Run(); });
    napi_add_env_cleanup_hook(env, Shutdown, this);
  }

  void Run() {
    for (;;) {
      PoolJob* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !todo_.empty(); });
        if (stop_) return;
        job = todo_.front();
        todo_.pop_front();
      }
      if (job->deadline_ns_ != 0 && MonotonicNs() > job->deadline_ns_) {
        job->expired_ = true;
      } else {
        job->Execute();
      }
      {
        std::lock_guard<std::mutex> lock(done_mu_);
        done_.push_back(job);
      }
      uv_async_send(&async_);
    }
  }

  // Main thread: settle every finished job's promise in one callback scope,
  // so their continuations (the replies) run before returning to the loop.
  static void OnDone(uv_async_t* handle) {
    auto* self = static_cast<HashPool*>(handle->data);
    std::vector<PoolJob*> done;
    {
      std::lock_guard<std::mutex> lock(self->done_mu_);
      done.swap(self->done_);
    }
    if (done.empty()) return;
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    Napi::CallbackScope callback_scope(env, self->context_);
    for (PoolJob* job : done) {
      if (job->expired_) {
        Napi::Error e = Napi::Error::New(env, "hash not started before the request's deadline");
        e.Set("code", Napi::String::New(env, "ETIMEDOUT"));
        job->deferred_.Reject(e.Value());
      } else {
        job->deferred_.Resolve(job->Result(env));
      }
      delete job;
      if (--self->pending_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&self->async_));
    }
  }

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
  }

  static HashPool* instance_;
  Napi::Env env_;
  Napi::AsyncContext context_;
  uv_async_t async_;
  size_t pending_ = 0;  // main thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PoolJob*> todo_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
  std::mutex done_mu_;
  std::vector<PoolJob*> done_;
};

HashPool* HashPool::instance_ = nullptr;

PoolJob::PoolJob(Napi::Env env, double timeout_ms)
    : deferred_(Napi::Promise::Deferred::New(env)),
      deadline_ns_(timeout_ms < 0 ? 0 : MonotonicNs() + static_cast<uint64_t>(timeout_ms * 1e6)) {}

void PoolJob::Submit() { HashPool::Get(deferred_.Env())->Submit(this); }

void InitPool(Napi::Env env, Napi::Object exports) {
  exports.Set("hashThreads", Napi::Number::New(env, HashPool::Threads()));
}

}  // namespace saslauthd
