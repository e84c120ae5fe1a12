// Live preview of the design editor: every change asks the control plane to render the design (the same
// renderer as the API's image_url) and shows its scannability verdict. Without JavaScript, Save still works.
(function () {
  "use strict";
  var form = document.getElementById("design-form");
  var image = document.getElementById("preview");
  var verdict = document.getElementById("verdict");
  if (!form || !image || !verdict) return;
  var timer = null;
  var inflight = null;

  function refresh() {
    var params = new URLSearchParams(new FormData(form));
    params.delete("csrf_token");
    if (inflight) inflight.abort();
    inflight = new AbortController();
    fetch(form.dataset.preview + "?" + params.toString(), {credentials: "same-origin", signal: inflight.signal})
      .then(function (response) { return response.json(); })
      .then(function (result) {
        if (result.image) image.src = result.image;
        verdict.textContent = result.verdict;
        verdict.className = result.scannable ? "ok" : "error";
        form.dataset.previewed = params.toString();
      })
      .catch(function (error) { if (error.name !== "AbortError") verdict.textContent = "Preview unavailable."; });
  }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });
  form.addEventListener("change", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 0);
  });
})();
