// See fingerprint.h.
#include "fingerprint.h"

#include <openssl/evp.h>
#include <string.h>

namespace saslauthd {

namespace {

// HMAC-SHA256 by its definition, H((K ^ opad) || H((K ^ ipad) || m)), with
// the two keyed states absorbed once when the key is set: each fingerprint
// then costs two context copies and the hashing, not OpenSSL's one-shot
// HMAC(), which looks the algorithms up by name on every call (about a tenth
// of the event loop's time per request).
constexpr size_t kBlock = 64;  // SHA-256's block size
EVP_MD_CTX* g_inner = nullptr;
EVP_MD_CTX* g_outer = nullptr;
// Used by the event-loop thread only (the listener), as is the whole file.
EVP_MD_CTX* g_work = nullptr;

void PutField(unsigned char* msg, size_t* pos, Field f, bool counted) {
  if (counted) {
    msg[(*pos)++] = static_cast<unsigned char>((f.size >> 8) & 0xff);
    msg[(*pos)++] = static_cast<unsigned char>(f.size & 0xff);
  }
  memcpy(msg + *pos, f.data, f.size);
  *pos += f.size;
}

void FreeContexts() {
  // EVP_MD_CTX_free cleanses the state (the keyed pads) before freeing it.
  EVP_MD_CTX_free(g_inner);
  EVP_MD_CTX_free(g_outer);
  EVP_MD_CTX_free(g_work);
  g_inner = g_outer = g_work = nullptr;
}

bool Keyed(EVP_MD_CTX* ctx, const unsigned char* block, unsigned char pad) {
  unsigned char padded[kBlock];
  for (size_t i = 0; i < kBlock; i++) padded[i] = block[i] ^ pad;
  bool ok = EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 && EVP_DigestUpdate(ctx, padded, kBlock) == 1;
  explicit_bzero(padded, sizeof padded);
  return ok;
}

}  // namespace

void SetFingerprintKey(const char* key, size_t len) {
  FreeContexts();
  // A key longer than a block is hashed first, as HMAC specifies.
  unsigned char block[kBlock] = {0};
  unsigned int hashed = 0;
  bool ok = true;
  if (len > kBlock) {
    ok = EVP_Digest(key, len, block, &hashed, EVP_sha256(), nullptr) == 1;
  } else {
    memcpy(block, key, len);
  }
  g_inner = EVP_MD_CTX_new();
  g_outer = EVP_MD_CTX_new();
  g_work = EVP_MD_CTX_new();
  ok = ok && g_inner != nullptr && g_outer != nullptr && g_work != nullptr && Keyed(g_inner, block, 0x36) &&
       Keyed(g_outer, block, 0x5c);
  explicit_bzero(block, sizeof block);
  if (!ok) FreeContexts();
}

bool HaveFingerprintKey() { return g_inner != nullptr; }

void Fingerprint(Field login, Field realm, Field password, unsigned char* out) {
  // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
  unsigned char msg[3 * (2 + kMaxReqLen)];
  size_t pos = 0;
  PutField(msg, &pos, login, true);
  PutField(msg, &pos, realm, true);
  PutField(msg, &pos, password, false);
  unsigned char inner[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  bool ok = g_inner != nullptr && EVP_MD_CTX_copy_ex(g_work, g_inner) == 1 && EVP_DigestUpdate(g_work, msg, pos) == 1 &&
            EVP_DigestFinal_ex(g_work, inner, &len) == 1 && len == kFingerprintBytes &&
            EVP_MD_CTX_copy_ex(g_work, g_outer) == 1 && EVP_DigestUpdate(g_work, inner, len) == 1 &&
            EVP_DigestFinal_ex(g_work, out, &len) == 1 && len == kFingerprintBytes;
  if (!ok) memset(out, 0, kFingerprintBytes);
  explicit_bzero(msg, sizeof msg);
  explicit_bzero(inner, sizeof inner);
}

}  // namespace saslauthd
