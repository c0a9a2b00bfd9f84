// One request as a front door hands it to the authenticator: the fields the
// client sent, its credentials' fingerprint, and the ways to answer it. Both
// doors implement it, the mux socket natively (mux-exchange.ts) and the
// Dovecot socket in JavaScript (dovecot/exchange.ts), so the authenticator,
// the cache, the throttle, the mechanisms and the logs cannot tell which one
// a request came through.
//
// Strings are Latin-1, one character per byte received, so a login that is
// not UTF-8 reaches NSS, PAM and the cache as the very bytes the client sent,
// and two different logins never collapse into one.
import type { FailureKind } from '../backends/backend';
import type { NativeShadowVerdict, QueueOptions } from '../native/binding';

/**
 * What an answer means, beside its wire text: the mux protocol sends only
 * the text ("OK", "NO ..."), but the Dovecot protocol tells a temporary
 * failure (unavailable, timeout) from a refusal.
 */
export type AnswerKind = 'ok' | FailureKind;

export interface Exchange {
  /** As sent (after the door's own user@realm split), before any -r join. */
  readonly login: string;
  readonly service: string;
  readonly realm: string;
  /** The client's address, when the door was given one. */
  readonly clientAddr: string | undefined;
  /** HMAC-SHA256 of login, realm and password under the daemon's key (auth/fingerprint.ts). */
  readonly fingerprint: Buffer;
  /** 32 bits of the fingerprint: the throttle's known-good and wrong-password marks. */
  readonly fp: number;
  /** Set once answered (by the authenticator, or by a native check). */
  readonly isAnswered: boolean;
  /** A copy of the password for a mechanism that runs in JavaScript; wipe it when done. Undefined once answered or gone. */
  password(): Buffer | undefined;
  /** Send the answer. False if it was already answered or the client has gone. */
  answer(text: string, kind: AnswerKind): boolean;
  /**
   * The shadow mechanism checked natively on the door's own connection, the
   * hashing thread answering the client itself except the answers hold
   * (ShadowHold bits) keeps for the authenticator. Only the mux door has it;
   * elsewhere the shadow mechanism queues a native job (native.shadowCheck).
   */
  checkShadow?(user: string, q: Required<QueueOptions>, hold: number): Promise<NativeShadowVerdict | undefined>;
}

/** The throttle's 32 bits of a fingerprint. */
export function fpOf(fingerprint: Buffer): number {
  return fingerprint.readUInt32BE(0);
}

/** What both doors' exchanges share: the request's fields and the answered-once flag. */
export abstract class ExchangeBase implements Exchange {
  protected answered = false;

  constructor(
    readonly id: number,
    readonly login: string,
    readonly service: string,
    readonly realm: string,
    readonly clientAddr: string | undefined,
    readonly fingerprint: Buffer,
  ) {}

  get fp(): number {
    return fpOf(this.fingerprint);
  }

  get isAnswered(): boolean {
    return this.answered;
  }

  abstract password(): Buffer | undefined;
  abstract answer(text: string, kind: AnswerKind): boolean;
}
