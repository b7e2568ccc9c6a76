// The review queue: N claims the next dispute.
"use strict";
document.addEventListener("keydown", function (e) {
  const tag = (e.target && e.target.tagName) || "";
  if (/^(INPUT|SELECT|TEXTAREA)$/.test(tag) || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "n" || e.key === "N") {
    e.preventDefault();
    document.getElementById("claim-form").requestSubmit();
  }
});
