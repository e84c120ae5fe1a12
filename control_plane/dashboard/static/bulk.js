// The codes list's "select all on this page" box (docs/dashboard.md). Without JavaScript the box stays
// hidden and rows are ticked one by one; the bulk form works the same either way.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  var count = document.getElementById("bulk-count");
  if (!all) { return; }
  var boxes = Array.prototype.slice.call(document.querySelectorAll('input[name="ids"][form="bulk"]'));
  if (!boxes.length) { return; }
  function show() {
    var ticked = boxes.filter(function (box) { return box.checked; }).length;
    all.checked = ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
    if (count) { count.textContent = ticked ? ticked + " selected" : ""; }
  }
  all.hidden = false;
  all.addEventListener("change", function () {
    boxes.forEach(function (box) { box.checked = all.checked; });
    show();
  });
  boxes.forEach(function (box) { box.addEventListener("change", show); });
  show();
}());
