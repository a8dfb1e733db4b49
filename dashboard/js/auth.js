// @ts-check
// Logging in and out of the dashboard (docs: POST /api/login, /api/logout, GET /api/me).
//
// The server keeps the session in an HttpOnly cookie, so the page never holds a credential: it
// only knows who it is (the /api/me answer). On load, a one-time `?code=` from `runwatch serve`
// is exchanged for a session and removed from the address bar; otherwise /api/me says whether
// the cookie still works. Whenever the server says "unauthenticated" (any 401, or the live socket
// closed 4401/4403) the app is stopped and the login page is shown instead.

import { api, onUnauthenticated } from "./dom.js";

const SESSION_ENDED = "Your session has ended — log in again.";

const $ = (id) => document.getElementById(id);

// May this identity start and cancel runs? (The server checks too; this only hides the buttons.)
export function canOperate(me) {
  return !me || me.role !== "viewer";
}

// The login body for what was pasted: API keys start with rw_, anything else is a token (JWT).
export function credentialOf(secret) {
  return secret.startsWith("rw_") ? { key: secret } : { token: secret };
}

// Who is logged in, or null when nobody is (401).
export async function whoAmI() {
  try {
    return await api("/api/me", { authRedirect: false });
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

// The one-time code in the address bar, removed from it at once (other params and the hash stay).
function takeCodeFromUrl() {
  const url = new URL(location.href);
  const code = url.searchParams.get("code");
  if (code === null) return null;
  url.searchParams.delete("code");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return code;
}

// A refused single sign-on comes back as `?login_error=…`: say why on the login page.
function takeLoginErrorFromUrl() {
  const url = new URL(location.href);
  const message = url.searchParams.get("login_error");
  if (message === null) return null;
  url.searchParams.delete("login_error");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return message;
}

function renderIdentity(me) {
  const whoami = $("whoami");
  whoami.hidden = !me;
  $("logout").hidden = !me || !me.auth;
  if (!me) return;
  whoami.textContent = me.auth ? `${me.name || me.id} · ${me.tenant} · ${me.role}` : "auth off";
  whoami.title = me.auth ? `signed in as ${me.id}` : "authentication is off (RUNWATCH_AUTH=off)";
  whoami.dataset.role = me.role;
}

// Wire the login page and the header to the app: `start(me)` shows and runs the app, `stop()`
// tears it down. Returns { signedOut(message), refresh() }.
export function startAuth({ start, stop }) {
  const form = $("login");
  const secret = /** @type {HTMLInputElement} */ ($("login-secret"));
  const submit = /** @type {HTMLButtonElement} */ ($("login-submit"));
  const error = $("login-error");
  const note = $("login-note");
  const noteText = note.textContent;
  let me = null;
  let signedIn = false;

  function enter(who) {
    me = who;
    signedIn = true;
    $("login-view").hidden = true;
    $("view").hidden = false;
    $("conn").hidden = false;
    renderIdentity(me);
    start(me);
  }

  function showLogin({ message = "", info = "" } = {}) {
    if (signedIn) stop();
    signedIn = false;
    me = null;
    renderIdentity(null);
    $("view").hidden = true;
    $("conn").hidden = true;
    $("login-view").hidden = false;
    error.textContent = message;
    note.textContent = info || noteText;
    submit.disabled = false;
    secret.focus();
  }

  async function logIn(body) {
    error.textContent = "";
    submit.disabled = true;
    try {
      const who = await api("/api/login", { method: "POST", body: JSON.stringify(body), authRedirect: false });
      secret.value = "";
      enter(who);
    } catch (failure) {
      showLogin({ message: failure.detail ?? `Could not log in: ${failure.message}` });
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const value = secret.value.trim();
    if (!value) {
      error.textContent = "Paste an API key (rw_…) or a token.";
      secret.focus();
      return;
    }
    logIn(credentialOf(value));
  });

  $("logout").addEventListener("click", async () => {
    try {
      await api("/api/logout", { method: "POST", authRedirect: false });
      showLogin({ info: "You are logged out." });
    } catch (failure) {
      showLogin({ message: `The server did not confirm the logout: ${failure.detail ?? failure.message}` });
    }
  });

  onUnauthenticated(() => {
    if (signedIn) showLogin({ message: SESSION_ENDED });
  });

  // Single sign-on, when the server has an identity provider (GET /api/login says so).
  fetch("/api/login").then((r) => r.json()).then((how) => { $("login-sso").hidden = !how.oidc; }).catch(() => {});

  async function boot() {
    const refused = takeLoginErrorFromUrl();
    if (refused !== null) return showLogin({ message: refused });
    const code = takeCodeFromUrl();
    if (code !== null) return logIn({ code });
    let who;
    try {
      who = await whoAmI();
    } catch {
      // The server is not answering: run the app anyway; it shows that and keeps reconnecting.
      return enter(null);
    }
    if (who) enter(who);
    else showLogin();
  }
  boot();

  return {
    // The live socket was closed 4401/4403: the session is over.
    signedOut(message = SESSION_ENDED) {
      if (signedIn) showLogin({ message });
    },
    // Ask the server again who we are (after it came back, or a stream was refused): a 401 shows
    // the login page; returns the identity when it changed.
    async refresh() {
      if (!signedIn) return null;
      const who = await api("/api/me").catch(() => undefined);
      if (!who || !signedIn) return null;
      const changed = !me || me.id !== who.id || me.role !== who.role;
      me = who;
      renderIdentity(me);
      return changed ? me : null;
    },
  };
}
