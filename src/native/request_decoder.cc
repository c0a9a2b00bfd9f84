// See request_decoder.h.
#include "request_decoder.h"

#include <string.h>

#include <algorithm>

namespace saslauthd {

namespace {

size_t Length(const char* p) {
  return (static_cast<size_t>(static_cast<unsigned char>(p[0])) << 8) | static_cast<unsigned char>(p[1]);
}

Field CString(const char* data, size_t n) {
  const void* nul = memchr(data, '\0', n);
  return {data, nul == nullptr ? n : static_cast<size_t>(static_cast<const char*>(nul) - data)};
}

}  // namespace

RequestDecoder::Status RequestDecoder::Feed(const char* data, size_t n) {
  received_ += n;
  if (status_ != Status::kIncomplete || n == 0) return status_;
  if (!buf_) buf_.reset(new char[kMaxRequestBytes]);
  // Past the most a request can need, bytes are ignored anyway.
  size_t take = std::min(n, kMaxRequestBytes - used_);
  memcpy(buf_.get() + used_, data, take);
  used_ += take;

  size_t pos = 0;
  for (int i = 0; i < 4; i++) {
    if (used_ < pos + 2) return status_;
    size_t len = Length(buf_.get() + pos);
    if (len > kMaxReqLen) {
      oversize_field_ = static_cast<size_t>(i);
      oversize_length_ = len;
      status_ = Status::kOversize;
      return status_;
    }
    if (used_ < pos + 2 + len) return status_;
    fields_[i] = CString(buf_.get() + pos + 2, len);
    pos += 2 + len;
  }
  if (used_ >= pos + 2) {
    size_t len = Length(buf_.get() + pos);
    if (len <= kMaxReqLen && used_ >= pos + 2 + len) {
      fields_[kAddr] = CString(buf_.get() + pos + 2, len);
      has_addr_ = true;
    }
  }
  status_ = Status::kComplete;
  return status_;
}

void RequestDecoder::Wipe() {
  if (buf_) {
    explicit_bzero(buf_.get(), kMaxRequestBytes);
    buf_.reset();
  }
  used_ = 0;
  for (Field& f : fields_) f = Field{};
}

}  // namespace saslauthd
