// A brush over an image: paint where the next edit may change things.
// props: src (image URL), number (the image's #), width, height (its size in pixels)
// "Use this region" sends the painted mask (white on transparent, PNG data URL, at most
// 768 px a side; the server scales it to the picture) with the optional instruction.
import { useEffect, useRef, useState } from "react";

const MAX_SIDE = 768;

export default function RegionBrush() {
  const canvasRef = useRef(null);
  const drawing = useRef(false);
  const last = useRef(null);
  const [mode, setMode] = useState("paint");
  const [size, setSize] = useState(40);
  const [text, setText] = useState("");
  const [painted, setPainted] = useState(false);
  const [sent, setSent] = useState(false);

  const scale = Math.min(1, MAX_SIDE / Math.max(props.width, props.height));
  const cw = Math.max(1, Math.round(props.width * scale));
  const ch = Math.max(1, Math.round(props.height * scale));

  useEffect(() => {
    const ctx = canvasRef.current.getContext("2d");
    ctx.clearRect(0, 0, cw, ch);
  }, [cw, ch]);

  const point = (e) => {
    const r = canvasRef.current.getBoundingClientRect();
    return { x: ((e.clientX - r.left) / r.width) * cw, y: ((e.clientY - r.top) / r.height) * ch };
  };

  const stroke = (from, to) => {
    const ctx = canvasRef.current.getContext("2d");
    const r = (canvasRef.current.getBoundingClientRect().width || cw);
    ctx.globalCompositeOperation = mode === "erase" ? "destination-out" : "source-over";
    ctx.strokeStyle = "rgba(255,255,255,1)";
    ctx.fillStyle = "rgba(255,255,255,1)";
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = size * (cw / r);
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
    ctx.beginPath();
    ctx.arc(to.x, to.y, ctx.lineWidth / 2, 0, Math.PI * 2);
    ctx.fill();
    if (mode === "paint") setPainted(true);
  };

  const down = (e) => {
    e.preventDefault();
    canvasRef.current.setPointerCapture && canvasRef.current.setPointerCapture(e.pointerId);
    drawing.current = true;
    last.current = point(e);
    stroke(last.current, last.current);
  };
  const move = (e) => {
    if (!drawing.current) return;
    const p = point(e);
    stroke(last.current, p);
    last.current = p;
  };
  const up = () => {
    drawing.current = false;
  };

  const clear = () => {
    canvasRef.current.getContext("2d").clearRect(0, 0, cw, ch);
    setPainted(false);
  };

  const use = () => {
    const mask = canvasRef.current.toDataURL("image/png");
    setSent(true);
    callAction({ name: "use_region", payload: { number: props.number, mask, text } });
  };

  const tool = (active) =>
    "rounded-md border px-2 py-1 text-sm " + (active ? "border-primary bg-accent" : "hover:bg-accent");

  return (
    <div className="w-full max-w-xl select-none space-y-2" data-testid="region-brush">
      <div className="relative w-full overflow-hidden rounded-md border">
        <img src={props.src} alt={`#${props.number}`} className="block w-full" draggable={false} />
        <canvas
          ref={canvasRef}
          width={cw}
          height={ch}
          data-testid="region-canvas"
          className="absolute inset-0 h-full w-full cursor-crosshair opacity-60"
          style={{ touchAction: "none", mixBlendMode: "normal", filter: "drop-shadow(0 0 1px #000)" }}
          onPointerDown={down}
          onPointerMove={move}
          onPointerUp={up}
          onPointerLeave={up}
        />
      </div>
      <div className="flex flex-wrap items-center gap-2">
        <button type="button" className={tool(mode === "paint")} onClick={() => setMode("paint")}>Paint</button>
        <button type="button" className={tool(mode === "erase")} onClick={() => setMode("erase")}>Erase</button>
        <label className="flex items-center gap-1 text-sm">
          Brush
          <input
            type="range"
            min="5"
            max="120"
            value={size}
            aria-label="Brush size"
            onChange={(e) => setSize(Number(e.target.value))}
          />
        </label>
        <button type="button" className={tool(false)} onClick={clear}>Clear</button>
      </div>
      <div className="flex items-center gap-2">
        <input
          type="text"
          value={text}
          placeholder="What to change there (or type it in the chat)"
          aria-label="Instruction for the painted region"
          onChange={(e) => setText(e.target.value)}
          className="min-w-0 flex-1 rounded-md border bg-transparent px-2 py-1 text-sm"
        />
        <button
          type="button"
          disabled={!painted || sent}
          onClick={use}
          className="rounded-md bg-primary px-3 py-1 text-sm text-primary-foreground disabled:opacity-50"
        >
          Use this region
        </button>
      </div>
    </div>
  );
}
