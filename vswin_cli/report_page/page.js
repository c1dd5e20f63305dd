(function () {
  "use strict";
  var all = document.getElementsByClassName("video");  // live: grows while the page parses
  var names = [], scanned = 0, colours = null, done = false;
  var page = 0, matches = null, shown = [];
  function $(id) { return document.getElementById(id); }
  function pageSize() { return Number($("videos").dataset.pageSize) || 25; }
  function scanLabels() {
    for (; scanned < all.length; scanned++) {
      var a = all[scanned], declared = a.dataset.labels ? JSON.parse(a.dataset.labels) : [];
      declared.forEach(function (d) {
        if (!colours) { var st = document.createElement("style"); document.head.appendChild(st); colours = st.sheet; }
        colours.insertRule(".c" + names.length + "{background:" + d[1] + "}", colours.cssRules.length);
        names.push(d[0]);
      });
    }
  }
  function tagsOf(a) { if (!a._tags) a._tags = JSON.parse(a.dataset.tags); return a._tags; }
  function want() {
    var name = $("f-label").value.trim(), i = -1;
    if (name) { scanLabels(); i = names.indexOf(name); if (i < 0) i = -2; }
    return {label: i, min: parseFloat($("f-score").value) || 0, status: $("f-status").value};
  }
  function matchVideo(a, f) {
    var err = a.hasAttribute("data-error");
    if ((f.status === "ok" && err) || (f.status === "error" && !err)) return false;
    if (f.label === -1 && f.min <= 0) return true;
    var tags = tagsOf(a);
    if (f.label !== -1) return f.label in tags && tags[f.label] >= f.min;
    for (var k in tags) if (tags[k] >= f.min) return true;
    return false;
  }
  function dimSegments(a, f) {
    var active = f.label !== -1 || f.min > 0;
    a.querySelectorAll(".seg").forEach(function (b) {
      var on = true;
      if (active) {
        var top = JSON.parse(b.dataset.top);
        on = top.some(function (t) { return (f.label === -1 || t[0] === f.label) && t[1] >= f.min; });
      }
      b.classList.toggle("dim", !on);
    });
  }
  function current() { return matches || Array.prototype.slice.call(all); }
  function render() {
    scanLabels();
    var f = want(), list = current(), size = pageSize(), pages = Math.max(1, Math.ceil(list.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    shown.forEach(function (a) { a.classList.remove("on"); });
    shown = list.slice(page * size, (page + 1) * size);
    shown.forEach(function (a) {
      a.classList.add("on"); dimSegments(a, f);
      var img = a.querySelector("img.sheet");
      if (img && !img.src) img.src = img.dataset.src;
    });
    $("page").textContent = "page " + (page + 1) + " of " + pages + (done ? "" : "+");
    $("count").textContent = list.length + " of " + all.length + (done ? "" : "+") + " videos";
  }
  function refilter() {
    var f = want();
    matches = (f.label === -1 && f.min <= 0 && f.status === "all") ? null
      : Array.prototype.filter.call(all, function (a) { return matchVideo(a, f); });
    page = 0; render();
  }
  function seek(a, t) {
    var v = a.querySelector("video");
    if (!v) return;
    if (v.readyState >= 1) { v.currentTime = t; return; }
    v.preload = "auto";
    v.addEventListener("loadedmetadata", function () { v.currentTime = t; }, {once: true});
    v.load();
  }
  function segParts(b) { return b.dataset.t.split(" ").map(Number); }
  document.addEventListener("input", function (e) {
    if (e.target.closest && e.target.closest("#filters")) refilter();
  });
  document.addEventListener("click", function (e) {
    if (e.target.id === "prev" || e.target.id === "next") {
      page += e.target.id === "next" ? 1 : -1; render(); window.scrollTo(0, 0); return;
    }
    var a = e.target.closest && e.target.closest(".video");
    if (!a) return;
    var bars = a.querySelectorAll(".seg"), b = e.target.closest(".seg");
    if (!b && e.target.classList.contains("sheet")) {
      var img = e.target, r = img.getBoundingClientRect(), k = img.naturalWidth / r.width;
      var col = Math.floor((e.clientX - r.left) * k / img.dataset.w), row = Math.floor((e.clientY - r.top) * k / img.dataset.h);
      b = bars[row * Number(img.dataset.cols) + col];
    }
    if (!b) return;
    a.querySelectorAll(".seg.sel").forEach(function (s) { s.classList.remove("sel"); });
    b.classList.add("sel");
    seek(a, segParts(b)[0]);
  });
  document.addEventListener("mouseover", function (e) {
    var tip = $("tip"), b = e.target.closest && e.target.closest(".seg");
    if (!tip) return;
    if (!b) { tip.hidden = true; return; }
    scanLabels();
    var t = segParts(b), top = JSON.parse(b.dataset.top), a = b.closest(".video");
    tip.textContent = "";
    var head = document.createElement("b");
    head.textContent = t[0].toFixed(2) + "\u2013" + t[1].toFixed(2) + " s (frames " + t[2] + "\u2013" + (t[3] - 1) + ")";
    tip.appendChild(head);
    top.forEach(function (x) {
      var d = document.createElement("div"); d.textContent = names[x[0]] + " " + (100 * x[1]).toFixed(1) + "%";
      tip.appendChild(d);
    });
    var img = a.querySelector("img.sheet");
    if (img) {
      var i = Array.prototype.indexOf.call(a.querySelectorAll(".seg"), b), cols = Number(img.dataset.cols);
      var w = Number(img.dataset.w), h = Number(img.dataset.h), d = document.createElement("div");
      d.className = "thumb"; d.style.width = w + "px"; d.style.height = h + "px";
      d.style.backgroundImage = "url(" + img.dataset.src + ")";
      d.style.backgroundPosition = (-(i % cols) * w) + "px " + (-Math.floor(i / cols) * h) + "px";
      tip.appendChild(d);
    }
    var r = b.getBoundingClientRect();
    tip.style.left = Math.min(r.left, window.innerWidth - 220) + "px"; tip.style.top = (r.bottom + 4) + "px";
    tip.hidden = false;
  });
  document.addEventListener("DOMContentLoaded", function () {
    done = true;
    var slot = $("label-slot"), table = $("labels").firstElementChild, list = $("label-names");
    slot.appendChild(table);  // written last: the counts are known only at the end
    slot.querySelectorAll("tbody td:first-child").forEach(function (td) {
      var o = document.createElement("option"); o.value = td.textContent; list.appendChild(o);
    });
    if (matches) refilter(); else render();
    window.vswinReport.ready = true;
    window.vswinReport.readyAt = performance.now();
  });
  window.vswinReport = {
    ready: false, readyAt: null, firstPageAt: null,
    firstPage: function () { render(); this.firstPageAt = performance.now(); },
    pages: function () { return Math.max(1, Math.ceil(current().length / pageSize())); },
    setPage: function (p) { page = p; render(); },
    labels: function () { scanLabels(); return names.slice(); }
  };
})();
