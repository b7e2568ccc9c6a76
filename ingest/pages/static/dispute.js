// The dispute view: zoomable photos, keyboard shortcuts, and a lease kept alive while open.
"use strict";
(function () {
  const root = document.getElementById("dispute");
  if (!root) return;

  // -- zoom and pan: wheel or buttons to zoom, drag to pan, Z toggles 3x on the dashboard photo
  document.querySelectorAll("figure.photo").forEach(function (fig) {
    const viewport = fig.querySelector(".viewport");
    const stage = fig.querySelector(".stage");
    const img = fig.querySelector("img");
    const overlay = fig.querySelector("svg.overlay");
    if (!viewport || !stage || !img) return;
    let scale = 1, x = 0, y = 0, drag = null;

    function fitOverlay() {
      // The image is drawn with object-fit: contain; place the OCR box layer exactly over it.
      if (!overlay || !img.naturalWidth) return;
      const vw = stage.clientWidth, vh = stage.clientHeight;
      const k = Math.min(vw / img.naturalWidth, vh / img.naturalHeight);
      const w = img.naturalWidth * k, h = img.naturalHeight * k;
      overlay.style.left = (vw - w) / 2 + "px";
      overlay.style.top = (vh - h) / 2 + "px";
      overlay.style.width = w + "px";
      overlay.style.height = h + "px";
    }
    function apply() {
      stage.style.transform = "translate(" + x + "px," + y + "px) scale(" + scale + ")";
      fig.dataset.scale = scale.toFixed(2);
    }
    function zoomAt(factor, cx, cy) {
      const next = Math.min(8, Math.max(1, scale * factor));
      x = cx - (cx - x) * (next / scale);
      y = cy - (cy - y) * (next / scale);
      scale = next;
      if (scale === 1) { x = 0; y = 0; }
      apply();
    }
    img.addEventListener("load", fitOverlay);
    window.addEventListener("resize", fitOverlay);
    if (img.complete) fitOverlay();
    viewport.addEventListener("wheel", function (e) {
      e.preventDefault();
      const r = viewport.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    viewport.addEventListener("pointerdown", function (e) {
      drag = { px: e.clientX, py: e.clientY, x: x, y: y };
      viewport.setPointerCapture(e.pointerId);
    });
    viewport.addEventListener("pointermove", function (e) {
      if (!drag || scale === 1) return;
      x = drag.x + e.clientX - drag.px;
      y = drag.y + e.clientY - drag.py;
      apply();
    });
    viewport.addEventListener("pointerup", function () { drag = null; });
    viewport.addEventListener("dblclick", function (e) {
      const r = viewport.getBoundingClientRect();
      if (scale > 1) { scale = 1; x = 0; y = 0; apply(); } else zoomAt(3, e.clientX - r.left, e.clientY - r.top);
    });
    fig.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () {
        const c = { x: viewport.clientWidth / 2, y: viewport.clientHeight / 2 };
        if (b.dataset.zoom === "in") zoomAt(1.5, c.x, c.y);
        else if (b.dataset.zoom === "out") zoomAt(1 / 1.5, c.x, c.y);
        else { scale = 1; x = 0; y = 0; apply(); }
      });
    });
    fig.toggleZoom = function () {
      if (scale > 1) { scale = 1; x = 0; y = 0; apply(); }
      else zoomAt(3, viewport.clientWidth / 2, viewport.clientHeight / 2);
    };
  });

  // -- keyboard shortcuts (not while typing)
  function submit(id) {
    const f = document.getElementById(id);
    if (f) f.requestSubmit();
  }
  document.addEventListener("keydown", function (e) {
    const tag = (e.target && e.target.tagName) || "";
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      if (/^(INPUT|SELECT|TEXTAREA)$/.test(tag)) e.target.blur();
      else window.location.href = "/review";
      return;
    }
    if (/^(INPUT|SELECT|TEXTAREA)$/.test(tag)) return;
    const key = e.key.toLowerCase();
    if (key === "a") {
      const b = document.getElementById("accept-button");
      if (b && !b.disabled) { e.preventDefault(); submit("accept-form"); }
    } else if (key === "c") {
      const v = document.getElementById("correct-value");
      if (v) { e.preventDefault(); v.focus(); v.select(); }
    } else if (key === "r") {
      const s = document.getElementById("reject-reason");
      if (s) { e.preventDefault(); s.focus(); }
    } else if (key === "z") {
      const fig = document.querySelector("figure.photo");
      if (fig && fig.toggleZoom) { e.preventDefault(); fig.toggleZoom(); }
    } else if (key === "n") {
      window.location.href = "/review";
    }
  });

  // -- keep the claim alive while the page is open
  if (root.dataset.mine === "yes") {
    const every = Math.max(5, Math.min(60, Number(root.dataset.leaseS) / 3)) * 1000;
    const until = document.getElementById("lease-until");
    const lost = document.getElementById("lease-lost");
    const renew = function () {
      fetch("/review/disputes/" + root.dataset.disputeId + "/renew", {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": root.dataset.csrf, "Accept": "application/json" },
      }).then(function (r) {
        if (r.ok) return r.json().then(function (b) {
          if (until) until.textContent = new Date(b.lease_until).toLocaleString();
          root.dataset.renewed = String((Number(root.dataset.renewed) || 0) + 1);
        });
        lost.hidden = false;
        document.querySelectorAll("#actions button").forEach(function (b) { b.disabled = true; });
        clearInterval(timer);
      }).catch(function () { /* a network hiccup: try again at the next tick */ });
    };
    const timer = setInterval(renew, every);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) renew(); });
  }
})();
