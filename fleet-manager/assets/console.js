// Fleet Manager console: a submit button is disabled once its form is sent,
// so a double click never starts an operation twice.
document.addEventListener("submit", function (e) {
  var b = e.target.querySelector("button[type=submit]");
  if (b) { setTimeout(function () { b.disabled = true; }, 0); }
}, true);
