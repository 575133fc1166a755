// Live progress of a change request over server-sent events. Plain DOM, textContent only:
// the data (task names, hosts) is user input and never becomes markup.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  const source = new EventSource(live.dataset.events);
  const set = (el, text) => { if (el && el.textContent !== String(text)) el.textContent = String(text); };
  function show(snapshot) {
    const phase = document.getElementById("phase");
    if (phase) { set(phase, snapshot.phase); phase.className = "phase " + snapshot.phase; }
    set(document.getElementById("waiting-for"), snapshot.waiting_for ? "Waiting for " + snapshot.waiting_for : "");
    for (const step of snapshot.steps) {
      const row = document.querySelector('tr[data-step="' + Number(step.index) + '"]');
      if (!row) continue;
      for (const key of ["state", "attempt", "ok", "changed", "failed"]) set(row.querySelector('[data-k="' + key + '"]'), step[key]);
    }
    const p = snapshot.progress;
    set(document.getElementById("progress"), p && p.task ? [p.play, p.task, p.host].join(" · ") : "");
    live.dataset.seen = String(Number(live.dataset.seen || 0) + 1);
  }
  source.addEventListener("progress", (e) => show(JSON.parse(e.data)));
  source.addEventListener("end", (e) => {
    show(JSON.parse(e.data));
    source.close();
    window.location.reload();  // the final page: decisions, audit commit
  });
  source.addEventListener("failure", () => source.close());
})();
