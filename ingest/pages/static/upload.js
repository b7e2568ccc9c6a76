// The citizen's upload page: previews, progress, then the outcome, without leaving the page.
// Without this script the form still works (the server answers with the outcome page).
"use strict";
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const status = document.getElementById("upload-status");
  const reasons = document.getElementById("upload-reasons");
  const progress = document.getElementById("upload-progress");
  const button = document.getElementById("upload-submit");
  const urls = {};

  function preview(inputId) {
    const input = document.getElementById(inputId);
    const img = document.getElementById(inputId + "-preview");
    input.addEventListener("change", function () {
      if (urls[inputId]) URL.revokeObjectURL(urls[inputId]);
      const file = input.files && input.files[0];
      if (!file) { img.hidden = true; return; }
      urls[inputId] = URL.createObjectURL(file);
      img.onerror = function () { img.hidden = true; };  // e.g. HEIC, which some browsers cannot show
      img.onload = function () { img.hidden = false; };
      img.src = urls[inputId];
    });
  }
  preview("dashboard");
  preview("plate");

  function say(text, reasonTexts) {
    status.textContent = text;
    reasons.textContent = "";
    (reasonTexts || []).forEach(function (r) {
      const li = document.createElement("li");
      li.textContent = r;
      reasons.appendChild(li);
    });
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        status.dataset.status = s.status;
        status.className = "status status-" + s.status;
        say(s.message, s.reasons);
        if (!s.final) setTimeout(function () { poll(url); }, 1000);
        else { button.disabled = false; status.scrollIntoView({ block: "center" }); }
      })
      .catch(function () { setTimeout(function () { poll(url); }, 2000); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const km = document.getElementById("claimed_km").value.trim();
    const dash = document.getElementById("dashboard").files;
    const plate = document.getElementById("plate").files;
    if (!dash.length || !plate.length || !/^[0-9]{1,7}$/.test(km)) {
      say(form.dataset.msgNeed);
      return;
    }
    const data = new FormData(form);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", form.elements["csrf"].value);
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = {}; }
      if (xhr.status === 202) {
        progress.value = 100;
        status.dataset.submission = body.id;
        say(form.dataset.msgSent);
        poll(body.status_url);
      } else {
        button.disabled = false;
        progress.hidden = true;
        say((body.error && body.error.message) || form.dataset.msgFailed);
      }
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      progress.hidden = true;
      say(form.dataset.msgFailed);
    });
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    say(form.dataset.msgSending);
    xhr.send(data);
  });
})();
