// The theme reads its light/dark mode from localStorage; a first visit (every visit of a file://
// page in a fresh browser) finds none and logs "Got invalid theme mode" as an error. Default to
// "auto" before the theme's deferred script runs.
if (!localStorage.getItem("mode")) localStorage.setItem("mode", "auto");
if (!document.documentElement.dataset.mode) {
  document.documentElement.dataset.mode = localStorage.getItem("mode");
}
