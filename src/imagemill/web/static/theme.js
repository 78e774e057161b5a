// The studio's colour theme, set before the page paints (loaded without defer): the
// system's (prefers-color-scheme) unless the header's toggle chose light or dark.
"use strict";
(() => {
  const THEMES = ["system", "light", "dark"];
  const root = document.documentElement;
  const apply = (theme) => {
    if (theme === "system") delete root.dataset.theme;
    else root.dataset.theme = theme;
  };
  let saved = "system";
  try {
    saved = localStorage.getItem("imagemill-theme") || "system";
  } catch {
    // storage refused (a private window): the system's theme
  }
  apply(THEMES.includes(saved) ? saved : "system");
  document.addEventListener("DOMContentLoaded", () => {
    const toggle = document.querySelector(".theme");
    if (!toggle) return;
    const label = () => {
      const theme = root.dataset.theme || "system";
      toggle.textContent = `Theme: ${theme}`;
      toggle.setAttribute("aria-label", `Colour theme: ${theme} (change)`);
    };
    label();
    toggle.addEventListener("click", () => {
      const next = THEMES[(THEMES.indexOf(root.dataset.theme || "system") + 1) % THEMES.length];
      apply(next);
      try {
        localStorage.setItem("imagemill-theme", next);
      } catch {
        // kept for this page only
      }
      label();
    });
  });
})();
