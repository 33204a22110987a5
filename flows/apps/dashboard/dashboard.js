/* svd-mlops dashboard: hover values on the training curves, legend toggles. Plain JS, no network, no
 * libraries. Each <figure class="curve"> holds an inline SVG and a <script type="application/json"> with
 * the drawn points (curves.py writes both with the same axes). */
(function () {
  "use strict";

  function fmt(v) {
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(3);
    return String(Number(v.toPrecision(4)));
  }

  function setup(fig) {
    var data = JSON.parse(fig.querySelector("script.chart-data").textContent);
    var svg = fig.querySelector("svg.chart");
    var dot = svg.querySelector("circle.hover-dot");
    var tip = fig.querySelector(".chart-tip");
    var box = data.box, x0 = data.x[0], x1 = data.x[1], y0 = data.y[0], y1 = data.y[1];
    var hidden = {};
    var series = data.series.map(function (s) {
      var px = s.steps.map(function (st) { return box[0] + (st - x0) / (x1 - x0) * box[2]; });
      var py = s.values.map(function (v) {
        var t = data.log ? Math.log10(v) : v;
        return box[1] + (1 - (t - y0) / (y1 - y0)) * box[3];
      });
      return {s: s, px: px, py: py};
    });

    function nearest(x, y) {
      var best = null;
      series.forEach(function (se) {
        if (hidden[se.s.run]) return;
        var lo = 0, hi = se.px.length - 1;
        while (lo < hi) {  // first point at or right of x
          var mid = (lo + hi) >> 1;
          if (se.px[mid] < x) lo = mid + 1; else hi = mid;
        }
        for (var i = Math.max(0, lo - 3); i <= Math.min(se.px.length - 1, lo + 3); i++) {
          var d = Math.hypot(se.px[i] - x, se.py[i] - y);
          if (best === null || d < best.d) best = {d: d, se: se, i: i};
        }
      });
      return best;
    }

    function hide() {
      dot.setAttribute("visibility", "hidden");
      tip.hidden = true;
    }

    svg.addEventListener("mousemove", function (ev) {
      var pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      var loc = pt.matrixTransform(svg.getScreenCTM().inverse());
      var hit = nearest(loc.x, loc.y);
      if (hit === null || hit.d > 40) { hide(); return; }
      var se = hit.se, i = hit.i;
      dot.setAttribute("cx", se.px[i]); dot.setAttribute("cy", se.py[i]);
      dot.setAttribute("fill", se.s.color);
      dot.setAttribute("visibility", "visible");
      tip.textContent = se.s.label + " · step " + se.s.steps[i] + " · " + data.title + " = " + fmt(se.s.values[i]);
      tip.style.borderColor = se.s.color;
      tip.hidden = false;
      var sr = svg.getBoundingClientRect(), fr = fig.getBoundingClientRect();
      var scale = sr.width / svg.viewBox.baseVal.width;
      var left = sr.left - fr.left + se.px[i] * scale + 12, top = sr.top - fr.top + se.py[i] * scale - 34;
      var maxLeft = fig.clientWidth - tip.offsetWidth - 4;
      tip.style.left = Math.max(0, Math.min(left, maxLeft)) + "px";
      tip.style.top = Math.max(0, top) + "px";
    });
    svg.addEventListener("mouseleave", hide);

    return function toggle(run, off) {
      hidden[run] = off;
      svg.querySelectorAll("polyline.series").forEach(function (line) {
        if (line.getAttribute("data-run") === run) line.style.display = off ? "none" : "";
      });
      hide();
    };
  }

  /* One legend per training stage: a click hides or shows that run in every chart of the stage. */
  document.querySelectorAll(".stage-curves").forEach(function (block) {
    var toggles = [];
    block.querySelectorAll("figure.curve").forEach(function (fig) { toggles.push(setup(fig)); });
    block.querySelectorAll("button.legend-item").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var off = !btn.classList.contains("off");
        btn.classList.toggle("off", off);
        btn.setAttribute("aria-pressed", off ? "false" : "true");
        toggles.forEach(function (toggle) { toggle(btn.getAttribute("data-run"), off); });
      });
    });
  });
})();
