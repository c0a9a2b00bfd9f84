// A request from the mux socket, as the native listener hands it over
// (src/native/listener.h): the listener has decoded it, applied Cyrus's
// checks and computed the fingerprint; the password stays in native memory
// until a mechanism asks for a copy, and the shadow mechanism can check it
// there, its hashing thread answering the client itself.
import { encodeReply } from '../protocol/encoder';
import type { NativeListener, NativeShadowVerdict, QueueOptions } from '../native/binding';
import { type AnswerKind, ExchangeBase } from './exchange';

export class MuxExchange extends ExchangeBase {
  constructor(
    private readonly listener: NativeListener,
    id: number,
    login: string,
    service: string,
    realm: string,
    /** Cyrus master's 5th field, when a client sent a non-empty one. */
    clientAddr: string | undefined,
    fingerprint: Buffer,
  ) {
    super(id, login, service, realm, clientAddr, fingerprint);
  }

  password(): Buffer | undefined {
    return this.listener.password(this.id);
  }

  /** The mux protocol has only the text: a refusal and an outage are both "NO ...", as in Cyrus. */
  answer(text: string, _kind: AnswerKind): boolean {
    if (this.answered) return false;
    this.answered = true;
    return this.listener.reply(this.id, encodeReply(text));
  }

  async checkShadow(user: string, q: Required<QueueOptions>, hold: number): Promise<NativeShadowVerdict | undefined> {
    const p = this.listener.checkShadow(this.id, user, q.timeoutMs, q.high, q.fp, q.shedAfterMs, hold);
    if (p === undefined) return undefined;
    const verdict = await p;
    if (verdict[2]) this.answered = true;
    return verdict;
  }
}
