// The one decoder of saslauthd requests (Cyrus 2.1.28 ipc_unix.c: do_request):
// pure and incremental, no sockets, no timers. Fed any chunking, one byte at
// a time included, it says when a request is complete and where its fields
// are. The listener (listener.cc) is its only user in the daemon; a test
// binding (decodeRequestForTest) checks it against a reference model.
//
// A request is four counted strings: a 2-byte big-endian length, then that
// many bytes: login, password, service, realm. A length over 256 ends the
// request at once (Cyrus answers "NO " without reading the field). Upstream
// master appends a 5th, the client address; it is taken only if its bytes
// are already here when the realm completes, never waited for (waiting is how
// a master daemon deadlocks against every released client). Cyrus copies
// each field into a C string, so an embedded NUL ends it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace saslauthd {

constexpr size_t kMaxReqLen = 256;
constexpr const char* kFieldNames[] = {"login", "password", "service", "realm", "client address"};
// The most a request can need buffered: four fields and the optional address.
constexpr size_t kMaxRequestBytes = 5 * (2 + kMaxReqLen);

struct Field {
  const char* data = nullptr;
  size_t size = 0;
};

class RequestDecoder {
 public:
  enum class Status { kIncomplete, kComplete, kOversize };
  enum FieldIndex { kLogin = 0, kPassword = 1, kService = 2, kRealm = 3, kAddr = 4 };

  RequestDecoder() = default;
  ~RequestDecoder() { Wipe(); }
  RequestDecoder(const RequestDecoder&) = delete;
  RequestDecoder& operator=(const RequestDecoder&) = delete;

  // Appends a chunk and decodes. After kComplete or kOversize, further input
  // is ignored (the status stays).
  Status Feed(const char* data, size_t n);
  Status status() const { return status_; }

  // After kComplete: a field, cut at its first NUL (empty if absent).
  Field field(FieldIndex i) const { return fields_[i]; }
  bool has_addr() const { return has_addr_; }
  // After kOversize: which field announced which length.
  size_t oversize_field() const { return oversize_field_; }
  size_t oversize_length() const { return oversize_length_; }
  // Bytes received so far.
  size_t received() const { return received_; }

  // Zeroes and frees the buffer (the password is in it). Fields are invalid after.
  void Wipe();

 private:
  // Allocated on the first byte, once, never grown: no stray copy of a
  // password is left behind by a reallocation, and an idle client costs none.
  std::unique_ptr<char[]> buf_;
  size_t used_ = 0;
  size_t received_ = 0;
  Status status_ = Status::kIncomplete;
  Field fields_[5];
  bool has_addr_ = false;
  size_t oversize_field_ = 0;
  size_t oversize_length_ = 0;
};

}  // namespace saslauthd
