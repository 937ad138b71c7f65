// The Review page's keys. The form works without this file; these only press its buttons faster.
// 1-9: toggle that arm right <-> wrong (unmarked becomes right); r: reference wrong; s: save and next;
// n/j: next; k: previous. Esc leaves a text field so the keys work again.
(function () {
  "use strict";
  var form = document.getElementById("review-form");
  if (!form) { return; }
  var reviewer = document.getElementById("reviewer");
  if (reviewer && !reviewer.value && window.localStorage) {
    reviewer.value = window.localStorage.getItem("tunewise-reviewer") || "";
  }
  form.addEventListener("submit", function () {
    if (reviewer && window.localStorage) { window.localStorage.setItem("tunewise-reviewer", reviewer.value); }
  });
  function toggle(index) {
    var radios = form.querySelectorAll('input[type="radio"][name="verdict_' + index + '"]');
    if (!radios.length) { return; }
    var current = "";
    radios.forEach(function (r) { if (r.checked) { current = r.value; } });
    var next = current === "right" ? "wrong" : "right";
    radios.forEach(function (r) { r.checked = r.value === next; });
  }
  function go(which) {
    var href = form.dataset[which];
    if (href) { window.location.href = href; }
  }
  document.addEventListener("keydown", function (event) {
    var tag = (event.target && event.target.tagName) || "";
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (tag === "TEXTAREA" || (tag === "INPUT" && event.target.type === "text")) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    var key = event.key;
    if (key >= "1" && key <= "9") { toggle(Number(key) - 1); }
    else if (key === "r") { var box = document.getElementById("reference-wrong"); box.checked = !box.checked; }
    else if (key === "s") { document.getElementById("save-next").click(); }
    else if (key === "n" || key === "j") { go("next"); }
    else if (key === "k") { go("prev"); }
    else { return; }
    event.preventDefault();
  });
}());
