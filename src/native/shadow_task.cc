// See shadow_task.h.
#include "shadow_task.h"

#include <errno.h>
#include <sched.h>
#include <sys/socket.h>

#include "listener.h"

namespace saslauthd {

ShadowTask::ShadowTask(Napi::Env env, Listener* owner, uint64_t conn_id, int fd, std::string user, Field password,
                       double timeout_ms, int hold)
    : PoolTask(timeout_ms),
      owner_(owner),
      conn_id_(conn_id),
      fd_(fd),
      user_(std::move(user)),
      password_(password.data, password.size),
      hold_(hold),
      deferred_(Napi::Promise::Deferred::New(env)) {}

std::string ShadowTask::CountedString(const std::string& text) {
  std::string wire(2, '\0');
  wire[0] = static_cast<char>((text.size() >> 8) & 0xff);
  wire[1] = static_cast<char>(text.size() & 0xff);
  return wire + text;
}

void ShadowTask::Execute() {
  verdict_ = CheckShadow(user_.c_str(), password_.c_str());
  text_ = ShadowReplyText(verdict_);
  // A refusal the throttle holds back, or a success the credential cache
  // must record first (as Cyrus commits before it answers), is JavaScript's
  // to send.
  if ((hold_ & (verdict_.code == kOk ? kHoldSuccess : kHoldFailure)) != 0) return;
  int expected = kUnclaimed;
  if (!writer_.compare_exchange_strong(expected, kPoolWriting)) return;
  wire_ = CountedString(text_);
  // A few bytes into a socket nobody else writes to: never blocks.
  ssize_t n = send(fd_, wire_.data(), wire_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  sent_ = n < 0 ? (errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno) : n;
  shut_ = static_cast<size_t>(n) == wire_.size() && shutdown(fd_, SHUT_WR) == 0;
  writer_.store(kPoolDone);
}

// Once the client has its whole answer, only the log and the connection's
// cleanup remain: no need to wake the loop for them.
bool ShadowTask::WakeLoop() const {
  return writer_.load() != kPoolDone || static_cast<size_t>(sent_) != wire_.size() || !shut_;
}

bool ShadowTask::Claim() {
  int expected = kUnclaimed;
  return writer_.compare_exchange_strong(expected, kMain) || expected == kMain;
}

void ShadowTask::ReleaseSocket() {
  if (Claim()) return;
  while (writer_.load() == kPoolWriting) sched_yield();
}

void ShadowTask::Finish(Napi::Env env, Fate fate) {
  bool answered = PoolAnswered();
  owner_->ShadowFinished(this);
  int code = fate == Fate::kRan ? verdict_.code : fate == Fate::kExpired ? kShadowExpired : kShadowShed;
  Napi::Array r = Napi::Array::New(env, 3);
  r.Set(0u, Napi::Number::New(env, code));
  r.Set(1u, Napi::String::New(env, fate == Fate::kRan ? text_ : std::string()));
  r.Set(2u, Napi::Boolean::New(env, answered));
  deferred_.Resolve(r);
}

}  // namespace saslauthd
