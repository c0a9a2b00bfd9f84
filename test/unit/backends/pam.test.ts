// The pam backend's pure parts: which PAM result gives which wire reply and
// outcome kind, and the fail delay owed when PAM asked for none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { failDelayUs, FLOOR_FAIL_DELAY_US, PamCode, randomizeDelayUs, toOutcome } from '../../../src/backends/pam';
import type { PamResult } from '../../../src/native/binding';

const result = (r: Partial<PamResult>): PamResult => ({
  ok: false,
  code: PamCode.AUTH_ERR,
  stage: 'pam_authenticate',
  message: 'Authentication failure',
  delayUs: 0,
  ...r,
});

test('a completed transaction is OK', () => {
  assert.deepEqual(toOutcome(result({ ok: true, code: 0, stage: 'done' })), { ok: true, text: 'OK' });
});

test('a failed pam_start is NO PAM start error, logged as unavailable', () => {
  const o = toOutcome(result({ stage: 'pam_start', code: 4 }));
  assert.deepEqual(o, { ok: false, kind: 'unavailable', text: 'NO PAM start error', reason: 'PAM start error' });
});

test('wrong credentials in pam_authenticate are NO PAM auth error, denied', () => {
  for (const code of [PamCode.AUTH_ERR, PamCode.USER_UNKNOWN, PamCode.MAXTRIES, PamCode.CRED_INSUFFICIENT]) {
    assert.deepEqual(toOutcome(result({ code })), {
      ok: false,
      kind: 'denied',
      text: 'NO PAM auth error',
      reason: 'PAM auth error',
      // Only PAM_USER_UNKNOWN lets a chain ask its next mechanism.
      ...(code === PamCode.USER_UNKNOWN ? { unknownUser: true } : {}),
    });
  }
});

test('a module that cannot decide (authinfo unavailable, conversation error) is the same reply, unavailable', () => {
  for (const code of [PamCode.AUTHINFO_UNAVAIL, PamCode.CONV_ERR]) {
    const o = toOutcome(result({ code }));
    assert.equal(o.text, 'NO PAM auth error');
    assert.equal(o.ok === false && o.kind, 'unavailable');
  }
});

test('an account refused by pam_acct_mgmt is NO PAM acct error, denied', () => {
  for (const code of [PamCode.ACCT_EXPIRED, PamCode.NEW_AUTHTOK_REQD, PamCode.AUTH_ERR, PamCode.PERM_DENIED]) {
    const o = toOutcome(result({ stage: 'pam_acct_mgmt', code }));
    assert.equal(o.text, 'NO PAM acct error');
    assert.equal(o.ok === false && o.kind, 'denied');
  }
});

test('the delay PAM computed is used as is', () => {
  assert.equal(failDelayUs({ delayUs: 2_345_678 }), 2_345_678);
});

test('with no delay from PAM (or no PAM result) the floor applies, randomised as libpam does', () => {
  for (let i = 0; i < 1000; i++) {
    for (const d of [failDelayUs({ delayUs: 0 }), failDelayUs(undefined)]) {
      assert.ok(d >= FLOOR_FAIL_DELAY_US * 0.5 && d <= FLOOR_FAIL_DELAY_US * 1.5, String(d));
    }
  }
});

test('the randomised delay spreads around its base', () => {
  const xs = Array.from({ length: 2000 }, () => randomizeDelayUs(1_000_000));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(Math.min(...xs) >= 500_000 && Math.max(...xs) <= 1_500_000);
  assert.ok(new Set(xs).size > 1000, 'not a fixed value');
  assert.ok(mean > 950_000 && mean < 1_050_000, `mean ${mean}`);
});
