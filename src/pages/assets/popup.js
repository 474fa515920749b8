// Talks to the partner page that opened this popup. Messages go only to the origins the
// organization allows (read from the page, where the server put them); a browser drops
// a message whose target origin is not the opener's, so nothing reaches anyone else.
// Messages from the opener are read only from the opener, at an allowed origin.
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

  // The public API's shape of each message.
  function message(type, value) {
    switch (type) {
      case "tray.authpopup.finish":
        return { type: type, authId: value };
      case "tray.authPopup.error":
        return { type: type, error: value };
      case "tray.configPopup.error":
        return { type: type, err: value };
      case "tray.configPopup.finish":
      case "tray.configPopup.cancel":
        return { type: type, data: { solutionInstanceId: value } };
      default:
        return { type: type };
    }
  }

  var type = element.getAttribute("data-message");
  if (type) {
    post(message(type, element.getAttribute("data-value")));
    if (type === "tray.authpopup.finish" || type === "tray.configPopup.finish") {
      window.close();
    }
  }

  var cancel = document.getElementById("cancel");
  var cancelType = element.getAttribute("data-cancel");
  if (cancel && cancelType) {
    cancel.addEventListener("click", function () {
      post(message(cancelType, element.getAttribute("data-cancel-value")));
      window.close();
    });
  }

  // After a refused post, take keyboard and screen-reader users to the errors.
  var summary = document.getElementById("error-summary");
  if (summary) {
    summary.focus();
  }

  // The wizard's last step: before finishing, the opener may check the values
  // (`tray.configPopup.validate`); while it answers `inProgress` the page waits, its
  // `errors` (by slot externalId) go on the fields and stop the finish. Without an
  // opener, allowed origins, or an answer in time, the page finishes; the server checks
  // the values either way.
  var wizard = document.getElementById("wizard");
  if (!wizard || wizard.getAttribute("data-finish") !== "true") {
    return;
  }
  var FIRST_ANSWER_MS = 3000;
  var LONGEST_WAIT_MS = 60000;
  var status = document.getElementById("wizard-status");
  var finish = document.getElementById("next");
  var round = 0;
  var confirmed = false;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  function controls() {
    return Array.prototype.filter.call(wizard.elements, function (control) {
      return control.name && control.name.indexOf("config.") === 0;
    });
  }

  function valueOf(control) {
    if (control.type === "checkbox") {
      return control.checked;
    }
    if (control.type === "number") {
      return control.value === "" ? null : Number(control.value);
    }
    if (control.tagName === "TEXTAREA") {
      try {
        return JSON.parse(control.value);
      } catch (notJson) {
        return control.value;
      }
    }
    return control.value;
  }

  function showErrors(errors) {
    var shown = 0;
    var unplaced = [];
    Object.keys(errors).forEach(function (externalId) {
      var text = String(errors[externalId]);
      var control = document.getElementById("f-config." + externalId);
      if (!control) {
        unplaced.push(text);
        return;
      }
      var id = "e-config." + externalId;
      var note = document.getElementById(id);
      if (!note) {
        note = document.createElement("p");
        note.id = id;
        note.className = "field-error";
        control.parentNode.appendChild(note);
      }
      note.textContent = text;
      control.setAttribute("aria-invalid", "true");
      var described = (control.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
      if (described.indexOf(id) < 0) {
        described.unshift(id);
        control.setAttribute("aria-describedby", described.join(" "));
      }
      if (shown === 0) {
        control.focus();
      }
      shown += 1;
    });
    say(unplaced.length ? unplaced.join(" ") : "Please correct the fields marked.");
  }

  function proceed() {
    confirmed = true;
    var action = document.createElement("input");
    action.type = "hidden";
    action.name = "_action";
    action.value = "finish";
    wizard.appendChild(action);
    wizard.submit();
  }

  wizard.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    if (confirmed || (submitter && submitter.value !== "finish")) {
      return;
    }
    if (!window.opener || origins.length === 0) {
      return;
    }
    event.preventDefault();
    round += 1;
    var mine = round;
    var configValues = {};
    var visibleValues = [];
    controls().forEach(function (control) {
      var externalId = control.name.slice("config.".length);
      visibleValues.push(externalId);
      configValues[externalId] = valueOf(control);
    });
    finish.disabled = true;
    say("Checking your settings…");
    var timer = setTimeout(done, FIRST_ANSWER_MS);
    var longest = setTimeout(done, LONGEST_WAIT_MS);

    function done() {
      if (mine !== round) {
        return;
      }
      round += 1;
      clearTimeout(timer);
      clearTimeout(longest);
      window.removeEventListener("message", listen);
      proceed();
    }

    function listen(answer) {
      if (mine !== round || answer.source !== window.opener || origins.indexOf(answer.origin) < 0) {
        return;
      }
      var data = answer.data || {};
      if (data.type !== "tray.configPopup.client.validation") {
        return;
      }
      var result = data.data || data;
      clearTimeout(timer);
      if (result.inProgress) {
        return;
      }
      var errors = result.errors || {};
      if (Object.keys(errors).length === 0) {
        done();
        return;
      }
      round += 1;
      clearTimeout(longest);
      window.removeEventListener("message", listen);
      finish.disabled = false;
      showErrors(errors);
    }

    window.addEventListener("message", listen);
    post({
      type: "tray.configPopup.validate",
      data: {
        visibleValues: visibleValues,
        configValues: configValues,
        visibleSlots: visibleValues,
        slotValues: configValues,
      },
    });
  });
})();
