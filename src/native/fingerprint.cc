// See fingerprint.h.
#include "fingerprint.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

namespace saslauthd {

namespace {

std::vector<unsigned char> g_key;

void PutField(unsigned char* msg, size_t* pos, Field f, bool counted) {
  if (counted) {
    msg[(*pos)++] = static_cast<unsigned char>((f.size >> 8) & 0xff);
    msg[(*pos)++] = static_cast<unsigned char>(f.size & 0xff);
  }
  memcpy(msg + *pos, f.data, f.size);
  *pos += f.size;
}

}  // namespace

void SetFingerprintKey(const char* key, size_t len) {
  if (!g_key.empty()) explicit_bzero(g_key.data(), g_key.size());
  g_key.assign(key, key + len);
}

bool HaveFingerprintKey() { return !g_key.empty(); }

void Fingerprint(Field login, Field realm, Field password, unsigned char* out) {
  // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
  unsigned char msg[3 * (2 + kMaxReqLen)];
  size_t pos = 0;
  PutField(msg, &pos, login, true);
  PutField(msg, &pos, realm, true);
  PutField(msg, &pos, password, false);
  unsigned int out_len = kFingerprintBytes;
  if (HMAC(EVP_sha256(), g_key.data(), static_cast<int>(g_key.size()), msg, pos, out, &out_len) == nullptr) {
    memset(out, 0, kFingerprintBytes);
  }
  explicit_bzero(msg, sizeof msg);
}

}  // namespace saslauthd
