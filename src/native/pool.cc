// See pool.h.
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>

namespace saslauthd {

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

// How often queued ordinary work is checked against the shedding bound and
// the deadlines while any waits: the bound is seconds, so a tenth of one is
// precise enough and costs nothing when the queue is empty (the timer stops).
constexpr uint64_t kSweepMs = 100;

// How long a thread that finished known-good work waits for more before it
// starts ordinary work (see Run): a client's round trip, with room for a
// busy event loop, and small beside any hash worth queueing.
constexpr uint64_t kGraceNs = 3'000'000;

unsigned g_pam_threads = 8;
WorkPool* g_hash_pool = nullptr;
WorkPool* g_pam_pool = nullptr;

bool Overdue(uint64_t deadline_ns, uint64_t now) { return deadline_ns != 0 && now > deadline_ns; }

}  // namespace

unsigned WorkPool::UsableCpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

WorkPool::WorkPool(Napi::Env env, const char* thread_name, unsigned threads)
    : env_(env), context_(env, thread_name), name_(thread_name) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  uv_async_init(loop, &async_, OnAsync);
  async_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&async_));  // only pending tasks keep the process alive
  uv_check_init(loop, &check_);
  check_.data = this;
  uv_check_start(&check_, OnCheck);
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_timer_init(loop, &sweep_);
  sweep_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&sweep_));
  for (unsigned i = 0; i < std::max(1u, threads); i++) threads_.emplace_back([this] { Run(); });
  napi_add_env_cleanup_hook(env, Shutdown, this);
}

WorkPool::~WorkPool() = default;

void WorkPool::Submit(PoolTask* task) {
  if (pending_++ == 0) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
  uint64_t now = MonotonicNs();
  task->enqueued_ns_ = now;
  bool shed_now = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (task->high_) {
      high_.push_back(task);
    } else if (task->shed_after_ns_ != 0 && !normal_.empty() &&
               now - normal_.front()->enqueued_ns_ > task->shed_after_ns_) {
      // Ordinary work already waits longer than the bound: this would too.
      shed_now = true;
    } else {
      normal_.push_back(task);
    }
  }
  if (shed_now) {
    task->fate_ = PoolTask::Fate::kShed;
    Done(task, true);
    return;
  }
  cv_.notify_one();
  if (!task->high_ && (task->shed_after_ns_ != 0 || task->deadline_ns_ != 0)) ArmSweep();
}

size_t WorkPool::Promote(uint32_t fp) {
  size_t moved = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = normal_.begin(); it != normal_.end();) {
      if ((*it)->fp_ == fp) {
        (*it)->high_ = true;
        high_.push_back(*it);
        it = normal_.erase(it);
        moved++;
      } else {
        ++it;
      }
    }
  }
  return moved;
}

PoolTask* WorkPool::Next(uint64_t now) {
  PoolTask* t;
  if (!high_.empty()) {
    t = high_.front();
    high_.pop_front();
  } else {
    t = normal_.front();
    normal_.pop_front();
    if (t->shed_after_ns_ != 0 && now - t->enqueued_ns_ > t->shed_after_ns_) t->fate_ = PoolTask::Fate::kShed;
  }
  if (t->fate_ == PoolTask::Fate::kRan && Overdue(t->deadline_ns_, now)) t->fate_ = PoolTask::Fate::kExpired;
  return t;
}

void WorkPool::Run() {
  pthread_setname_np(pthread_self(), name_.c_str());  // what top -H and /proc/<pid>/task/*/comm show
  // After known-good work, a thread waits a moment for more before it takes
  // ordinary work: a returning client's next request is on its way (a round
  // trip through the client and the event loop), and an ordinary task
  // started in that gap would hold the thread for a whole hash.
  uint64_t grace_until = 0;
  for (;;) {
    PoolTask* task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !high_.empty() || !normal_.empty(); });
      if (stop_) return;
      uint64_t now = MonotonicNs();
      if (high_.empty() && now < grace_until) {
        cv_.wait_for(lock, std::chrono::nanoseconds(grace_until - now), [this] { return stop_ || !high_.empty(); });
        if (stop_) return;
        grace_until = 0;
        if (high_.empty() && normal_.empty()) continue;
        now = MonotonicNs();
      }
      task = Next(now);
      running_++;
    }
    bool known_good = task->high_ && task->fate_ == PoolTask::Fate::kRan;
    if (task->fate_ == PoolTask::Fate::kRan) task->Execute();
    grace_until = known_good ? MonotonicNs() + kGraceNs : 0;
    bool wake = task->fate_ != PoolTask::Fate::kRan || task->WakeLoop();
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      done_.push_back(task);
      done_count_.store(done_.size());
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_--;
      // A task that needs nothing soon is finished on the loop's next turn
      // (OnCheck), which the next connection or its client's close brings;
      // the last one of a burst wakes the loop so nothing waits for long.
      // Decided after the push: a thread that finishes later wakes the loop
      // for this task too.
      if (high_.empty() && normal_.empty() && running_ == 0) wake = true;
    }
    if (wake) uv_async_send(&async_);
  }
}

// Main thread or a pool thread: hand a task to the main thread.
void WorkPool::Done(PoolTask* task, bool wake) {
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_.push_back(task);
    done_count_.store(done_.size());
  }
  if (wake) uv_async_send(&async_);
}

void WorkPool::ArmSweep() {
  if (sweeping_) return;
  sweeping_ = true;
  uv_timer_start(&sweep_, OnSweep, kSweepMs, kSweepMs);
}

// Main thread: ordinary work past its shedding bound or its deadline leaves
// the queue now, not when a thread would have reached it (with known-good
// work keeping every thread busy, that could be never).
void WorkPool::OnSweep(uv_timer_t* handle) {
  auto* self = static_cast<WorkPool*>(handle->data);
  std::vector<PoolTask*> dropped;
  bool empty;
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    uint64_t now = MonotonicNs();
    for (auto it = self->normal_.begin(); it != self->normal_.end();) {
      PoolTask* t = *it;
      if (t->shed_after_ns_ != 0 && now - t->enqueued_ns_ > t->shed_after_ns_) {
        t->fate_ = PoolTask::Fate::kShed;
      } else if (Overdue(t->deadline_ns_, now)) {
        t->fate_ = PoolTask::Fate::kExpired;
      } else {
        ++it;
        continue;
      }
      dropped.push_back(t);
      it = self->normal_.erase(it);
    }
    empty = self->normal_.empty();
  }
  if (!dropped.empty()) {
    std::lock_guard<std::mutex> lock(self->done_mu_);
    self->done_.insert(self->done_.end(), dropped.begin(), dropped.end());
    self->done_count_.store(self->done_.size());
  }
  if (empty) {
    uv_timer_stop(&self->sweep_);
    self->sweeping_ = false;
  }
  if (!dropped.empty()) self->FinishDone();
}

void WorkPool::OnAsync(uv_async_t* handle) { static_cast<WorkPool*>(handle->data)->FinishDone(); }

void WorkPool::OnCheck(uv_check_t* handle) {
  auto* self = static_cast<WorkPool*>(handle->data);
  if (self->done_count_.load() != 0) self->FinishDone();
}

// Main thread: finish every completed task in one callback scope, so the
// continuations (the replies) run before returning to the loop.
void WorkPool::FinishDone() {
  std::vector<PoolTask*> done;
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    done.swap(done_);
    done_count_.store(0);
  }
  if (done.empty()) return;
  Napi::HandleScope scope(env_);
  Napi::CallbackScope callback_scope(env_, context_);
  for (PoolTask* task : done) {
    task->Finish(env_, task->fate_);
    delete task;
    if (--pending_ == 0) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
  }
}

size_t WorkPool::QueuedHigh() {
  std::lock_guard<std::mutex> lock(mu_);
  return high_.size();
}

size_t WorkPool::QueuedNormal() {
  std::lock_guard<std::mutex> lock(mu_);
  return normal_.size();
}

size_t WorkPool::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

double WorkPool::OldestNormalWaitMs() {
  std::lock_guard<std::mutex> lock(mu_);
  if (normal_.empty()) return 0;
  return static_cast<double>(MonotonicNs() - normal_.front()->enqueued_ns_) / 1e6;
}

void WorkPool::Shutdown(void* arg) {
  auto* self = static_cast<WorkPool*>(arg);
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->stop_ = true;
  }
  self->cv_.notify_all();
  for (auto& t : self->threads_) t.join();
  // The loop is being torn down: tasks still queued are dropped with it.
  uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->check_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&self->sweep_), nullptr);
}

PoolTask::PoolTask(double timeout_ms)
    : deadline_ns_(timeout_ms < 0 ? 0 : MonotonicNs() + static_cast<uint64_t>(timeout_ms * 1e6)) {}

void PoolTask::Submit(WorkPool* pool) { pool->Submit(this); }

PoolJob::PoolJob(Napi::Env env, double timeout_ms) : PoolTask(timeout_ms), deferred_(Napi::Promise::Deferred::New(env)) {}

void PoolJob::Finish(Napi::Env env, Fate fate) {
  if (fate == Fate::kRan) {
    deferred_.Resolve(Result(env));
    return;
  }
  bool shed = fate == Fate::kShed;
  Napi::Error e = Napi::Error::New(env, shed ? "not started: ordinary work waited past the shedding bound"
                                             : "not started before the request's deadline");
  e.Set("code", Napi::String::New(env, shed ? "ESHED" : "ETIMEDOUT"));
  deferred_.Reject(e.Value());
}

WorkPool* HashPool(Napi::Env env) {
  if (g_hash_pool == nullptr) {
    Napi::HandleScope scope(env);  // callers may be outside JavaScript (a libuv callback)
    g_hash_pool = new WorkPool(env, "saslauthd-hash", WorkPool::UsableCpus());
  }
  return g_hash_pool;
}

WorkPool* PamPool(Napi::Env env) {
  if (g_pam_pool == nullptr) {
    Napi::HandleScope scope(env);
    g_pam_pool = new WorkPool(env, "saslauthd-pam", g_pam_threads);
  }
  return g_pam_pool;
}

void FinishPoolTasks(Napi::Env env) { HashPool(env)->FinishDone(); }

void SetPamThreads(unsigned n) { g_pam_threads = std::max(1u, n); }

namespace {

// SCHED_BATCH for the calling thread and every thread it creates later (the
// pools, libuv's pool): a thread woken by I/O then waits for the running
// one's time slice instead of preempting it at once. With the CPUs
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

WorkPool* PoolArg(const Napi::CallbackInfo& info) {
  std::string which = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (which == "hash") return HashPool(info.Env());
  if (which == "pam") return PamPool(info.Env());
  Napi::TypeError::New(info.Env(), "pool name: 'hash' or 'pam'").ThrowAsJavaScriptException();
  return nullptr;
}

// poolStats(name) -> {threads, running, queuedHigh, queuedNormal, oldestNormalWaitMs, pending}
Napi::Value PoolStats(const Napi::CallbackInfo& info) {
  WorkPool* pool = PoolArg(info);
  if (pool == nullptr) return info.Env().Undefined();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", pool->threads());
  o.Set("running", static_cast<double>(pool->Running()));
  o.Set("queuedHigh", static_cast<double>(pool->QueuedHigh()));
  o.Set("queuedNormal", static_cast<double>(pool->QueuedNormal()));
  o.Set("oldestNormalWaitMs", pool->OldestNormalWaitMs());
  o.Set("pending", static_cast<double>(pool->Pending()));
  return o;
}

// promote(name, fp) -> tasks moved to the known-good queue
Napi::Value PoolPromote(const Napi::CallbackInfo& info) {
  WorkPool* pool = PoolArg(info);
  if (pool == nullptr) return info.Env().Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    Napi::TypeError::New(info.Env(), "promote(pool, fp: number)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), static_cast<double>(pool->Promote(info[1].As<Napi::Number>().Uint32Value())));
}

Napi::Value SetPamThreadsJs(const Napi::CallbackInfo& info) {
  if (g_pam_pool != nullptr || info.Length() < 1 || !info[0].IsNumber()) {
    Napi::Error::New(info.Env(), "setPamThreads(n) before the first PAM check").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  SetPamThreads(info[0].As<Napi::Number>().Uint32Value());
  return info.Env().Undefined();
}

}  // namespace

void InitPool(Napi::Env env, Napi::Object exports) {
  exports.Set("hashThreads", Napi::Number::New(env, WorkPool::UsableCpus()));
  exports.Set("preferBatchScheduling", Napi::Function::New(env, PreferBatchScheduling));
  exports.Set("poolStats", Napi::Function::New(env, PoolStats));
  exports.Set("poolPromote", Napi::Function::New(env, PoolPromote));
  exports.Set("setPamThreads", Napi::Function::New(env, SetPamThreadsJs));
}

}  // namespace saslauthd
