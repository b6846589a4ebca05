// Keeps what is typed in the composer across the page's own reloads.
//
// Opening the app, Chainlit's page may sign in and reload (/ -> /login -> /) after the
// composer has already appeared, and it re-renders the composer when the welcome screen
// gives way to the chat. Whatever was typed in that moment would be lost: this copies the
// text to sessionStorage as it is typed and puts it back into an empty composer, until
// the message is sent.
(function () {
  const KEY = "qec:composer";
  const setter = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set;

  function composer() {
    const el = document.getElementById("chat-input");
    return el && el.tagName === "TEXTAREA" ? el : null;
  }

  function restore() {
    const el = composer();
    const saved = sessionStorage.getItem(KEY);
    if (!el || !saved || el.value) return;
    setter.call(el, saved);  // through React's own setter, so its state follows
    el.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("input", (e) => {
    if (e.target && e.target.id === "chat-input") {
      if (e.target.value) sessionStorage.setItem(KEY, e.target.value);
      else sessionStorage.removeItem(KEY);
    }
  }, true);

  function sent() {
    sessionStorage.removeItem(KEY);
  }
  document.addEventListener("click", (e) => {
    if (e.target && e.target.closest && e.target.closest("#chat-submit")) sent();
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.target && e.target.id === "chat-input" && e.key === "Enter" && !e.shiftKey && !e.isComposing) sent();
  }, true);

  new MutationObserver(restore).observe(document.documentElement, { childList: true, subtree: true });
  document.addEventListener("DOMContentLoaded", restore);
})();
