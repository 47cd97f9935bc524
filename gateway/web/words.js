// Every error the API returns, in words a popug understands, chosen by its `extensions.code`.
// The app never shows a raw JSON error.

const WORDS = {
  UNAUTHENTICATED: 'Your sign-in has expired or is not valid. Please sign in again.',
  FORBIDDEN: 'You are not allowed to do that.',
  CONFLICT: 'Someone changed this in the meantime. The page now shows it as it is.',
  NOT_FOUND: 'That no longer exists.',
  RATE_LIMITED: 'Too many changes at once. Wait a few seconds, then try again.',
  SERVICE_UNAVAILABLE: 'The service is busy or restarting. Try again in a moment.',
  TIMEOUT: 'The service took too long to answer. Try again in a moment.',
  ACCOUNTING_PENDING: 'Accounting has not priced this yet. It will show in a moment.',
  IDEMPOTENCY_KEY_REUSED: 'This was sent twice with different contents. Please try again.',
  NETWORK: 'The service cannot be reached. Check your connection; the app keeps trying.',
};

/** What to tell the popug about ERROR (an ApiError or anything thrown). */
export function wordsFor(error) {
  if (error?.code === 'BAD_USER_INPUT') {
    // The gateway's own message says which field is wrong and why, for people.
    return `That was not accepted: ${error.message}.`;
  }
  return WORDS[error?.code] ?? 'Something went wrong. Please try again.';
}
