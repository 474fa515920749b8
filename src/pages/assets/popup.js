// Talks to the partner page that opened this popup. Messages go only to the origins the
// organization allows (read from the page, where the server put them); a browser drops
// a message whose target origin is not the opener's, so nothing reaches anyone else.
(function () {
  "use strict";
  var element = document.getElementById("lk-popup");
  if (!element) {
    return;
  }
  var origins = [];
  try {
    origins = JSON.parse(element.getAttribute("data-origins") || "[]");
  } catch (ignored) {
    origins = [];
  }

  function post(message) {
    if (!window.opener) {
      return;
    }
    origins.forEach(function (origin) {
      window.opener.postMessage(message, origin);
    });
  }

  var type = element.getAttribute("data-message");
  if (type === "tray.authpopup.finish") {
    post({ type: type, authId: element.getAttribute("data-auth-id") });
    window.close();
  } else if (type === "tray.authPopup.error") {
    post({ type: type, error: element.getAttribute("data-error") });
  }

  var cancel = document.getElementById("cancel");
  if (cancel) {
    cancel.addEventListener("click", function () {
      post({ type: "tray.authpopup.close" });
      window.close();
    });
  }

  // After a refused post, take keyboard and screen-reader users to the errors.
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
  }
})();
