// fast-check arbitraries shared by the fuzz targets: strings that stress names and data (unicode
// edge cases, lone surrogates, NULs, huge values) and numbers at the edges of what JSON and the
// schema allow. Kept apart from the targets so each target reads as its property, not its data.
import * as fc from 'fast-check';
import { durationMsMax, sessionTtlMsMax, sessionTtlMsMin } from '../core/limits';

/** For every fc.oneof: a failing case shrinks towards the first (simplest) alternative too, not
 *  only within the alternative it was drawn from. */
export const shrinkAcross: fc.OneOfConstraints = { withCrossShrink: true };

/** Single UTF-16 code units and short sequences that break naive string handling. */
export const awkwardUnits = [
  '\u0000', '\t', '\r', ' ', '"', '\\', '/', '.', '..', '\u007f', '\u0085', '\u00a0', 'é', 'e\u0301', '\u200b', '\u200d',
  '\u2028', '\u2029', '\ufeff', '\uffff', '\ufffd', '\ud800', '\udbff', '\udc00', '\udfff', '😀', '👩‍👩‍👧', '中', 'Ω', 'ß',
  '\u0130', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
] as const;

const unit: fc.Arbitrary<string> = fc.oneof(
  shrinkAcross,
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', 'Z', '0', '9', '-', '_', ':') },
  { weight: 2, arbitrary: fc.constantFrom(...awkwardUnits) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
);

/** A short string of mixed plain, awkward and arbitrary code points (lone surrogates included). */
export function awkwardString(minLength: number, maxLength: number): fc.Arbitrary<string> {
  return fc.string({ unit, minLength, maxLength });
}

/** A name for a client, lock or file as the state machine sees it: the node validates names on
 *  the way in, but apply must not care what a string holds. */
export const anyName: fc.Arbitrary<string> = fc.oneof(
  shrinkAcross,
  { weight: 4, arbitrary: fc.constantFrom('c0', 'c1', 'L', 'f', 'a/b', 'x.y:z') },
  { weight: 4, arbitrary: awkwardString(1, 8) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('n', '😀', '\ud800'), fc.integer({ min: 100, max: 2000 })).map(([c, n]) => c.repeat(n)) },
);

/** Append data: mostly small, sometimes empty, sometimes larger than a frame. */
export const appendData: fc.Arbitrary<string> = fc.oneof(
  shrinkAcross,
  { weight: 6, arbitrary: awkwardString(0, 12) },
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('x', 'é', '😀', '\udfff'), fc.integer({ min: 1000, max: 70000 })).map(([c, n]) => c.repeat(n)) },
);

/** Durations as the schema admits them (integers, 0..durationMsMax), biased to small ones. */
export function durationMs(min: number): fc.Arbitrary<number> {
  return fc.oneof(
  shrinkAcross,
    { weight: 6, arbitrary: fc.integer({ min, max: Math.max(min, 2000) }) },
    { weight: 1, arbitrary: fc.constantFrom(min, durationMsMax) },
    { weight: 1, arbitrary: fc.integer({ min, max: durationMsMax }) },
  );
}

export const ttlMs: fc.Arbitrary<number> = fc.oneof(
  shrinkAcross,
  { weight: 4, arbitrary: fc.integer({ min: sessionTtlMsMin, max: 3000 }) },
  { weight: 1, arbitrary: fc.constantFrom(sessionTtlMsMin, sessionTtlMsMax) },
);

/** Numbers a JSON parser can hand over: huge, tiny, negative zero, unsafe integers. */
export const edgeNumbers = [
  0, -0, 1, -1, 0.5, 1e-300, 5e-324, 1e21, 1e308, -1e308, Number.MAX_VALUE, -Number.MAX_VALUE,
  2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 86_400_000, 86_400_001, 99, 100,
] as const;

/** Literal number texts, including ones JSON.parse refuses or rounds (`9007199254740993`). */
export const edgeNumberTexts = [
  '1e400', '-1e400', '123456789012345678901234567890', '9007199254740993', '9007199254740991', '1e-400', '-0',
  '0.0000000000000000000000001', '1E+308', '1e308', '4294967297', '18446744073709551616', '1.7976931348623157e308',
  '86400001', '86400000', '99', '100', '0x10', '01', '.5', '1.', 'NaN', 'Infinity', '-Infinity', '-', '+1', '"NaN"',
  '"1e308"', '"-0"', '1.0', '1e0', '-0.0',
] as const;

/** A name the schema accepts (PROTOCOL §3: `[A-Za-z0-9._:/-]`, no empty, `.` or `..` segment),
 *  of at most `lengthMax` characters, often with several segments. */
export function validName(lengthMax: number): fc.Arbitrary<string> {
  const segment = fc.string({ unit: fc.constantFrom(...'aZ09._:-'.split('')), minLength: 1, maxLength: 12 })
    .filter((s) => s !== '.' && s !== '..');
  return fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/').slice(0, lengthMax))
    .filter((name) => !name.endsWith('/') && name.split('/').every((s) => s !== '.' && s !== '..'));
}
