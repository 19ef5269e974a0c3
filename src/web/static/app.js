// Herald's one script; every page works without it.
// 1. Ask before destructive actions.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// 2. A page rendered as the answer to a form (a new webhook, a new secret) names its own
//    address, so that reloading it does not send the form again.
const own = document.querySelector("main[data-location]");
if (own) {
  history.replaceState(null, "", own.dataset.location);
}

// 3. Live parts ([data-live] with an id) follow new attempts: every 2 s the page is fetched
//    again and those parts replaced, unless the reader is in one or the tab is hidden.
if (document.querySelector("[data-live]")) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const res = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (res.ok) {
        const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
        for (const el of document.querySelectorAll("[data-live]")) {
          const next = fresh.getElementById(el.id);
          if (next && !el.contains(document.activeElement) && next.innerHTML !== el.innerHTML) {
            el.innerHTML = next.innerHTML;
          }
        }
      }
    } catch (_) {
      // Offline or restarting: try again on the next tick.
    } finally {
      busy = false;
    }
  }, 2000);
}
