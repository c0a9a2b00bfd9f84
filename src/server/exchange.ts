// One request as the listener hands it over (src/native/listener.h): the
// fields the client sent, its credentials' fingerprint, and the ways to answer
// it. Strings are Latin-1, one character per byte received, so a login that is
// not UTF-8 reaches NSS, PAM and the cache as the very bytes the client sent,
// and two different logins never collapse into one.
import { encodeReply } from '../protocol/encoder';
import type { NativeListener, NativeShadowVerdict, QueueOptions } from '../native/binding';

export class Exchange {
  /** Set once answered (by us, or by a native check). */
  private answered = false;

  constructor(
    private readonly listener: NativeListener,
    readonly id: number,
    /** As sent, before any -r join. */
    readonly login: string,
    readonly service: string,
    readonly realm: string,
    /** Cyrus master's 5th field, when a client sent a non-empty one. */
    readonly clientAddr: string | undefined,
    /** HMAC-SHA256 of login, realm and password under the daemon's key. */
    readonly fingerprint: Buffer,
  ) {}

  /** 32 bits of the fingerprint: the throttle's known-good and wrong-password marks. */
  get fp(): number {
    return this.fingerprint.readUInt32BE(0);
  }

  get isAnswered(): boolean {
    return this.answered;
  }

  /** A copy of the password for a mechanism that runs in JavaScript; wipe it when done. */
  password(): Buffer | undefined {
    return this.listener.password(this.id);
  }

  /** Send the answer. False if it was already answered or the client has gone. */
  answer(text: string): boolean {
    if (this.answered) return false;
    this.answered = true;
    return this.listener.reply(this.id, encodeReply(text));
  }

  /**
   * The shadow mechanism, checked natively; its hashing thread answers the
   * client itself, except the answers hold (ShadowHold bits) keeps for us.
   */
  async checkShadow(user: string, q: Required<QueueOptions>, hold: number): Promise<NativeShadowVerdict | undefined> {
    const p = this.listener.checkShadow(this.id, user, q.timeoutMs, q.high, q.fp, q.shedAfterMs, hold);
    if (p === undefined) return undefined;
    const verdict = await p;
    if (verdict[2]) this.answered = true;
    return verdict;
  }
}
