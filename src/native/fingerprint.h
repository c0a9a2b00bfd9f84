// The credentials' fingerprint: HMAC-SHA256, under a key that exists only in
// the daemon's memory (or the fleet's key file), of the login, realm and
// password exactly as the client sent them. JavaScript gets this instead of
// the password for everything but checking it: the credential cache compares
// it whole, the throttle keeps 32 bits of it (enough to tell a returning user
// from a guesser, too few to confirm a guess offline). OpenSSL is Node's own.
#pragma once
#include <cstddef>
#include <cstdint>

#include "request_decoder.h"

namespace saslauthd {

constexpr size_t kFingerprintBytes = 32;

// Sets the key (copied; the previous one is wiped).
void SetFingerprintKey(const char* key, size_t len);
bool HaveFingerprintKey();
// out must hold kFingerprintBytes.
void Fingerprint(Field login, Field realm, Field password, unsigned char* out);

}  // namespace saslauthd
