// @ts-check
// What a WebSocket close means for the page: log in again, stop for good, or reconnect (with each
// run's last seq). The server says which codes are which in its `hello` (`close_codes`, from
// agents/errors.py); until a hello has come, the generated constants of protocol.js stand in.

import { FINAL, LOG_IN_AGAIN } from "./protocol.js";

/** @typedef {import("./protocol.js").CloseCodes} CloseCodes */

/**
 * Which close codes end reconnecting; every one of `logInAgain` is in `final` too.
 * @typedef {object} CloseTerms
 * @property {ReadonlySet<number>} final after these, reconnecting as before cannot help
 * @property {ReadonlySet<number>} logInAgain after these, log in again (or get a fresh token) first
 */

/** @typedef {"log_in_again" | "final" | "reconnect"} AfterClose */

/** The terms before any `hello`: the protocol's constants as generated. @type {CloseTerms} */
export const DEFAULT_TERMS = Object.freeze({ final: FINAL, logInAgain: LOG_IN_AGAIN });

/**
 * The terms a `hello` states, or `current` when it states none (a server from before the field).
 * @param {{close_codes?: CloseCodes | null}} hello
 * @param {CloseTerms} [current]
 * @returns {CloseTerms}
 */
export function termsFrom(hello, current = DEFAULT_TERMS) {
  const codes = hello.close_codes;
  if (!codes || !Array.isArray(codes.final) || !Array.isArray(codes.log_in_again)) return current;
  /** @type {number[]} */
  const logInAgain = codes.log_in_again;
  return { final: new Set([...codes.final, ...logInAgain]), logInAgain: new Set(logInAgain) };
}

/**
 * What to do after the socket closed with `code` (undefined: it dropped without a close frame).
 * @param {number | undefined} code
 * @param {CloseTerms} [terms]
 * @returns {AfterClose}
 */
export function afterClose(code, terms = DEFAULT_TERMS) {
  if (code === undefined) return "reconnect";
  if (terms.logInAgain.has(code)) return "log_in_again";
  if (terms.final.has(code)) return "final";
  return "reconnect";
}
