// Typed loader for the native addon (build/Release/saslauthd_native.node),
// built by node-gyp during `npm ci` from the sources next to this file.
import path from 'node:path';

export const enum ShadowCode {
  Ok = 0,
  InvalidUser = 1,
  UserLookupFailure = 2,
  InvalidShadowUser = 3,
  ShadowLookupFailure = 4,
  NisNotAllowed = 5,
  IncorrectPassword = 6,
  AccountExpired = 7,
  PasswordExpired = 8,
}

export interface ShadowResult {
  code: ShadowCode;
  detail: string;
}

export interface NativeAddon {
  cryptVerify(password: Buffer, hash: string): Promise<boolean>;
  shadowCheck(user: string, password: Buffer): Promise<ShadowResult>;
  raiseFdLimit(): number;
  preferredCryptPrefix: string;
  openlog(ident: string): void;
  syslog(priority: number, message: string): void;
}

// dist/src/native/binding.js -> <package root>/build/Release
const addonPath = path.resolve(__dirname, '..', '..', '..', 'build', 'Release', 'saslauthd_native.node');

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const native: NativeAddon = require(addonPath) as NativeAddon;
