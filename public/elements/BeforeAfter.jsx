// Before/after slider: the result drawn over its source, clipped at the handle.
// props: before, after (image URLs), beforeLabel, afterLabel
import { useState } from "react";

export default function BeforeAfter() {
  const [pos, setPos] = useState(50);
  return (
    <div className="w-full max-w-xl select-none" data-testid="before-after">
      <div className="relative w-full overflow-hidden rounded-md border">
        <img src={props.before} alt={props.beforeLabel} className="block w-full" draggable={false} />
        <img
          src={props.after}
          alt={props.afterLabel}
          className="absolute inset-0 block h-full w-full"
          style={{ clipPath: `inset(0 0 0 ${pos}%)` }}
          draggable={false}
        />
        <div className="absolute inset-y-0 w-0.5 bg-white shadow" style={{ left: `${pos}%` }} />
        <span className="absolute left-2 top-2 rounded bg-black/60 px-1.5 text-xs text-white">{props.beforeLabel}</span>
        <span className="absolute right-2 top-2 rounded bg-black/60 px-1.5 text-xs text-white">{props.afterLabel}</span>
      </div>
      <input
        type="range"
        min="0"
        max="100"
        value={pos}
        aria-label={`Compare ${props.beforeLabel} and ${props.afterLabel}`}
        onChange={(e) => setPos(Number(e.target.value))}
        className="mt-2 w-full"
      />
    </div>
  );
}
