/*! teams-connect connect.js v1: connect a Microsoft account in a popup. No dependencies.
 *
 *   TeamsConnect.open(connectUrl)     -> Promise<{status: "connected"} | {status: "error", error}>
 *   TeamsConnect.redirect(connectUrl) -> the full-page flow (the fallback)
 *
 * `connectUrl` is the connect_url of a session created with "display": "popup", a promise of it, or a
 * function returning either. Call `open` directly in the click handler: the window is opened at once
 * (before any await, or the browser blocks it) and navigated when the URL is known.
 *
 * Trust: a result is taken only from a message of the API's origin, sent by the window this call
 * opened, for the session it opened; otherwise from the API's status route (the server is the
 * truth). `popup.closed` alone never means cancelled: "closed" is answered only after the server says
 * the flow did not complete. Loaded on the session's return_to page after a popup flow (the opener
 * was cut off by Cross-Origin-Opener-Policy), it wakes the opener over a same-origin
 * BroadcastChannel and closes the window; the opener then asks the server.
 */
(function (root) {
  "use strict";
  if (root.TeamsConnect) return;
  var TYPE = "teams-connect:result";
  var CHANNEL = "teams-connect";
  var SESSION_RE = /^[A-Za-z0-9_-]{43}$/;
  var CODE_RE = /^[a-z_]{1,40}$/;
  var SEVER_MS = 3000; // closed this soon after navigating: COOP cut the handle, not the user
  var OPEN_POLL_MS = 3000; // server check while the window is open
  var SEVERED_POLL_MS = 2000; // the only way to learn the result when the opener is cut off
  var CLOSED_POLLS = 3; // "pending" answers, 1 s apart, before "closed" (a callback may be in flight)
  var MAX_FAILURES = 10; // unanswered status reads after the window is gone

  function connectTarget(value) {
    var url;
    try {
      url = new URL(String(value), root.location.href);
    } catch (e) {
      return null;
    }
    var loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(url.hostname);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) return null;
    var session = url.searchParams.get("session");
    if (!/\/connect\/start$/.test(url.pathname) || !session || !SESSION_RE.test(session)) return null;
    return { href: url.href, origin: url.origin, base: url.href.split("/connect/start")[0], session: session };
  }

  function resolveSource(source) {
    try {
      return Promise.resolve(typeof source === "function" ? source() : source);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  function features() {
    var w = 520, h = 680;
    var x = (root.screenX || 0) + Math.max(0, ((root.outerWidth || w) - w) / 2);
    var y = (root.screenY || 0) + Math.max(0, ((root.outerHeight || h) - h) / 2);
    return "popup=yes,width=" + w + ",height=" + h + ",left=" + Math.round(x) + ",top=" + Math.round(y);
  }

  function open(source) {
    var popup = null;
    try {
      popup = root.open("", "_blank", features()); // first, in the click; never "noopener" (Safari)
    } catch (e) {
      popup = null;
    }
    var pending = resolveSource(source); // a function runs now, still inside the click
    return new Promise(function (resolve, reject) {
      var done = false, target = null, ready = false, url = null;
      var navigatedAt = 0, closedAt = 0, severed = false, nextPoll = 0;
      var inFlight = false, pendingAfterClose = 0, failures = 0;
      var channel = null, ticker = null;

      function finish(result, error) {
        if (done) return;
        done = true;
        root.removeEventListener("message", onMessage);
        if (ticker) clearInterval(ticker);
        if (channel) channel.close();
        try {
          if (popup && !popup.closed) popup.close();
        } catch (e) { /* cut off by COOP */ }
        if (error) reject(error);
        else resolve(result);
      }
      function failed(code) {
        finish({ status: "error", error: code });
      }
      if (!popup || popup.closed) {
        pending.catch(function () {});
        failed("popup_blocked");
        return;
      }

      function onMessage(event) {
        var data = event.data;
        if (!target || event.origin !== target.origin || event.source !== popup) return;
        if (!data || data.type !== TYPE || data.session !== target.session) return;
        if (data.status === "connected") finish({ status: "connected" });
        else if (data.status === "error" && CODE_RE.test(String(data.error))) failed(data.error);
      }

      function poll() {
        if (inFlight || done) return;
        inFlight = true;
        var statusUrl = target.base + "/connect/v1/sessions/" + target.session + "/status";
        root
          .fetch(statusUrl, { credentials: "omit", cache: "no-store", mode: "cors" })
          .then(function (answer) {
            if (answer.status === 404) return { status: "error", error: "session_invalid" };
            if (!answer.ok) throw new Error("status " + answer.status);
            return answer.json();
          })
          .then(function (data) {
            inFlight = false;
            failures = 0;
            if (data.status === "connected") return finish({ status: "connected" });
            if (data.status === "error" && CODE_RE.test(String(data.error))) return failed(data.error);
            if (closedAt && !severed && ++pendingAfterClose >= CLOSED_POLLS) failed("closed");
          })
          .catch(function () {
            inFlight = false;
            if (closedAt && ++failures >= MAX_FAILURES) failed("upstream_unavailable");
          });
      }

      function tick() {
        if (done || !ready) return;
        var now = Date.now();
        if (!url) {
          // The URL is not known yet: a window the user closed meanwhile is a cancel (nothing started).
          return;
        }
        if (!closedAt && popup.closed) {
          closedAt = now;
          severed = now - navigatedAt < SEVER_MS;
          nextPoll = now;
        }
        if (now >= nextPoll) {
          nextPoll = now + (!closedAt ? OPEN_POLL_MS : severed ? SEVERED_POLL_MS : 1000);
          poll();
        }
      }

      function navigate() {
        if (done || !ready || !url) return;
        if (popup.closed) return failed("closed"); // closed before the flow could start
        try {
          popup.location.replace(url);
        } catch (e) {
          return failed("popup_blocked");
        }
        navigatedAt = Date.now();
        nextPoll = navigatedAt + OPEN_POLL_MS;
      }

      root.addEventListener("message", onMessage);
      if (typeof root.BroadcastChannel === "function") {
        channel = new root.BroadcastChannel(CHANNEL);
        channel.onmessage = function (event) {
          // Only a hint (it carries no session): ask the server about OUR session now.
          if (event.data && event.data.type === TYPE && target) nextPoll = 0;
        };
      }
      ticker = setInterval(tick, 250);
      // Some blockers open the window and close it at once: look again before navigating.
      setTimeout(function () {
        if (popup.closed) return failed("popup_blocked");
        ready = true;
        navigate();
      }, 100);
      pending.then(
        function (value) {
          target = connectTarget(value);
          if (!target) return finish(null, new TypeError("TeamsConnect.open: not a connect_url"));
          url = target.href;
          navigate();
        },
        function (error) {
          finish(null, error);
        }
      );
    });
  }

  function redirect(source) {
    return resolveSource(source).then(function (value) {
      var target = connectTarget(value);
      if (!target) throw new TypeError("TeamsConnect.redirect: not a connect_url");
      root.location.assign(target.href);
    });
  }

  // On the return_to page of a popup flow whose opener was cut off: hand over, then close.
  var landed = false;
  try {
    var query = new URLSearchParams(root.location.search);
    var status = query.get("status");
    if (query.get("display") === "popup" && (status === "connected" || status === "error")) {
      landed = true;
      if (typeof root.BroadcastChannel === "function") {
        var bc = new root.BroadcastChannel(CHANNEL);
        bc.postMessage({ type: TYPE });
        bc.close();
      }
      setTimeout(function () {
        root.close(); // works for the window open() made; elsewhere the page stays
      }, 50);
    }
  } catch (e) { /* not a landing */ }

  root.TeamsConnect = Object.freeze({ version: "1", open: open, redirect: redirect, landed: landed });
})(window);
