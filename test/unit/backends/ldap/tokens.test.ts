// Token expansion with Cyrus's semantics, and RFC 4515 / RFC 4514 escaping.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  escapeDnValue,
  escapeFilterValue,
  expandTokens,
  templateLiteral,
  type TokenContext,
} from '../../../../src/backends/ldap/tokens';

const ctx = (login: string, realm = '', service = 'imap', userDn?: string): TokenContext => ({
  login,
  realm,
  service,
  ...(userDn !== undefined ? { userDn } : {}),
});

describe('token expansion', () => {
  test('%u is the whole login, %U the part before the first @', () => {
    assert.equal(expandTokens('%u|%U', ctx('ann@mail.example.org'), 'filter'), 'ann@mail.example.org|ann');
    assert.equal(expandTokens('%u|%U', ctx('ann'), 'filter'), 'ann|ann');
  });

  test('%d is the part after the first @ of the login, with no fallback to the realm', () => {
    assert.equal(expandTokens('%d', ctx('ann@a@b.org'), 'filter'), 'a@b.org');
    assert.equal(expandTokens('[%d]', ctx('ann', 'example.org'), 'filter'), '[]');
  });

  test('%r is the realm and %R is @realm, or nothing without a realm', () => {
    assert.equal(expandTokens('%r|%R', ctx('ann', 'example.org'), 'filter'), 'example.org|@example.org');
    assert.equal(expandTokens('[%r|%R]', ctx('ann'), 'filter'), '[|]');
  });

  test('%1..%9 count the labels of the login domain from the right', () => {
    const c = ctx('ann@mail.example.org', 'other.net');
    assert.equal(expandTokens('dc=%3,dc=%2,dc=%1', c, 'dn'), 'dc=mail,dc=example,dc=org');
    assert.equal(expandTokens('[%4]', c, 'dn'), '[]');
  });

  test('%1..%9 use the realm when the login has no domain', () => {
    assert.equal(expandTokens('dc=%2,dc=%1', ctx('ann', 'example.org'), 'dn'), 'dc=example,dc=org');
  });

  test('%s is the service', () => {
    assert.equal(expandTokens('(svc=%s)', ctx('ann', '', 'smtp'), 'filter'), '(svc=smtp)');
  });

  test('%D is the user DN, filter-escaped in filters and inserted as is in DNs', () => {
    const c = ctx('ann', '', 'imap', 'uid=a\\,b,dc=x');
    assert.equal(expandTokens('(member=%D)', c, 'filter'), '(member=uid=a\\5c,b,dc=x)');
    assert.equal(expandTokens('%D', c, 'dn'), 'uid=a\\,b,dc=x');
    assert.equal(expandTokens('[%D]', ctx('ann'), 'filter'), '[]');
  });

  test('%% is a literal percent sign', () => {
    assert.equal(expandTokens('100%%', ctx('ann'), 'filter'), '100%');
  });

  test('an unknown token disappears and a lone trailing % stays', () => {
    assert.equal(expandTokens('a%xb%', ctx('ann'), 'filter'), 'ab%');
  });

  test('escapes substituted values in filters (RFC 4515), not the template', () => {
    assert.equal(expandTokens('(uid=%u)', ctx('*'), 'filter'), '(uid=\\2a)');
    assert.equal(expandTokens('(uid=%u)', ctx(')(uid=*'), 'filter'), '(uid=\\29\\28uid=\\2a)');
    assert.equal(expandTokens('(uid=%u)', ctx('(a)\\b'), 'filter'), '(uid=\\28a\\29\\5cb)');
  });

  test('escapes substituted values in DNs (RFC 4514)', () => {
    assert.equal(expandTokens('uid=%u,ou=people', ctx('a,b+c'), 'dn'), 'uid=a\\,b\\+c,ou=people');
    assert.equal(expandTokens('uid=%u,ou=people', ctx('x,ou=admins'), 'dn'), 'uid=x\\,ou\\=admins,ou=people');
  });
});

describe('escaping', () => {
  test('filter escaping covers * ( ) \\ and NUL only', () => {
    assert.equal(escapeFilterValue('a*b(c)d\\e\0f é'), 'a\\2ab\\28c\\29d\\5ce\\00f é');
  });

  test('DN escaping covers the RFC 4514 specials', () => {
    assert.equal(escapeDnValue('a"b+c,d;e<f>g=h\\i'), 'a\\"b\\+c\\,d\\;e\\<f\\>g\\=h\\\\i');
  });

  test('DN escaping protects leading space or #, trailing space, and NUL', () => {
    assert.equal(escapeDnValue(' #a b '), '\\ #a b\\ ');
    assert.equal(escapeDnValue('#x'), '\\#x');
    assert.equal(escapeDnValue(' '), '\\ ');
    assert.equal(escapeDnValue('a\0b'), 'a\\00b');
    assert.equal(escapeDnValue('x#y'), 'x#y');
  });

  test('the literal text of a template is what no token supplies; %% is a literal %', () => {
    assert.equal(templateLiteral('uid=%U,ou=people,dc=%2,dc=%1'), 'uid=,ou=people,dc=,dc=');
    assert.equal(templateLiteral('%u'), '');
    assert.equal(templateLiteral(' %U%R '), '  ');
    assert.equal(templateLiteral('%%u'), '%u');
    assert.equal(templateLiteral('a%'), 'a%');
  });
});
