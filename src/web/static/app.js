// Herald's one script; every page works without it.
// 1. Ask before destructive actions.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// 2. A page rendered as the answer to a form (a refused form, a new webhook, a new secret)
//    names its own address: the address bar shows it, and reloading asks for the page
//    instead of sending the form again.
const own = document.querySelector("main[data-location]");
if (own) {
  history.replaceState(null, "", own.dataset.location);
}

// 3. A refused form's summary takes focus (autofocus does too; this is for browsers that
//    skip it), and its links move focus to the field, with its label in view.
const summary = document.getElementById("error-summary");
if (summary) {
  if (document.activeElement !== summary) {
    summary.focus();
  }
  summary.addEventListener("click", (event) => {
    const link = event.target.closest("a[href^='#']");
    const field = link && document.getElementById(link.getAttribute("href").slice(1));
    if (field) {
      event.preventDefault();
      const label = document.querySelector(`label[for="${field.id}"]`);
      (label || field).scrollIntoView({ block: "start" });
      field.focus({ preventScroll: true });
    }
  });
}

// 4. Live parts ([data-live] with an id) follow new attempts: every 2 s the page is fetched
//    again and a part replaced when what it shows changed (its data-live-key; times in them
//    are absolute, so a clock tick changes nothing), unless the reader is in it or the tab
//    is hidden. None is an ARIA live region: when a part's state changes (data-live-state),
//    its data-announce sentence goes to the one polite announcer, once.
if (document.querySelector("[data-live]")) {
  const announcer = document.getElementById("announcer");
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
          if (!next || el.contains(document.activeElement)) continue;
          if (next.dataset.liveKey === el.dataset.liveKey) continue;
          const changed = next.dataset.liveState !== el.dataset.liveState;
          el.innerHTML = next.innerHTML;
          for (const name of ["liveKey", "liveState", "announce"]) {
            if (next.dataset[name] === undefined) delete el.dataset[name];
            else el.dataset[name] = next.dataset[name];
          }
          if (changed && next.dataset.announce && announcer) {
            announcer.textContent = next.dataset.announce;
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
