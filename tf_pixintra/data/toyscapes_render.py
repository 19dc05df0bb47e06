"""Drawing code of ToyScapes: procedural street scenes and their two looks.

A scene is drawn once with a pinhole camera over a flat ground plane, far to near (painter's
algorithm) with vectorised numpy masks on bounding boxes, into four canvases: trainIds, per-pixel
depth in metres, a flat colour and a surface orientation. The source ("synthetic") domain keeps the
flat colours of its own palette; the target ("real") domain uses a shifted palette and adds
texture, illumination, depth-dependent haze (Koschmieder's model
I = J * exp(-beta * d) + A * (1 - exp(-beta * d))), lens blur and sensor noise, with the haze
density beta drawn per image from a wide range.

Camera: height CAMERA_HEIGHT metres, focal length FOCAL_FRACTION * width pixels, horizon row y_h
and vanishing column x_v. A point at lateral offset X, height Y and depth z projects to column
x_v + X f / z and row y_h + (CAMERA_HEIGHT - Y) f / z. Pixel (i, j) has its centre at
(j + .5, i + .5).
"""

import dataclasses

import numpy as np

# trainIds drawn by ToyScapes (Cityscapes trainId order).
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE = 0, 1, 2, 3, 4, 5
TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY = 6, 7, 8, 9, 10
PERSON, CAR = 11, 13
DRAWN_CLASSES = (ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT,
                 TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR)

CAMERA_HEIGHT = 1.5   # metres above the ground
FOCAL_FRACTION = 0.8  # focal length in pixels = FOCAL_FRACTION * width
SKY_DEPTH = 1000.0    # metres: depth given to sky pixels (for the haze)
MAX_GROUND_DEPTH = 500.0

# Surface orientation codes (the target's illumination shades them apart).
ORIENT_SKY, ORIENT_GROUND, ORIENT_FRONT, ORIENT_LEFT, ORIENT_RIGHT = range(5)

# Haze density range (per metre); drawn log-uniformly per target image.
BETA_RANGE = (0.002, 0.06)
# Probability that a target image's airlight is dark (night-like fall-off).
DARK_PROBABILITY = 0.25
# The "shadows" variant: darkening of a shadow's core, drawn per image, and
# the colour left in it per RGB channel (bluish skylight).
SHADOW_STRENGTH = (0.55, 0.75)
SHADOW_TINT = (0.35, 0.45, 0.75)

# Source palette (RGB), a toy-like one unlike the Cityscapes palette.
# Part colours are keyed by name; classes by trainId.
_SOURCE_CLASS_COLOURS = {
    ROAD: (96, 92, 110), SIDEWALK: (196, 170, 140), BUILDING: (170, 96, 72),
    WALL: (200, 196, 120), FENCE: (128, 88, 40), POLE: (52, 52, 76),
    TRAFFIC_LIGHT: (250, 130, 20), TRAFFIC_SIGN: (250, 240, 40),
    VEGETATION: (40, 160, 50), TERRAIN: (150, 210, 90), SKY: (120, 190, 255),
    PERSON: (235, 30, 210), CAR: (30, 70, 210),
}
_SOURCE_PART_COLOURS = {
    "lane": (235, 235, 235), "window": (60, 70, 110), "car_window": (20, 30, 60),
    "wheel": (20, 20, 20), "skin": (235, 190, 150), "legs": (90, 20, 60),
    "lamp": (255, 250, 200),
}


def _target_palette():
    """Class and part colours of the target domain (fixed, seed-independent):
    the source ones desaturated, warmer, darker, shifted per entry."""
    rng = np.random.default_rng(20210817)
    mix = np.array([[0.85, 0.15, 0.00],            # warmer cast
                    [0.05, 0.85, 0.10],
                    [0.05, 0.20, 0.75]])
    palette = []
    for colours, shift in ((_SOURCE_CLASS_COLOURS, 18.0), (_SOURCE_PART_COLOURS, 10.0)):
        palette.append({})
        for key, rgb in sorted(colours.items()):
            offset = rng.uniform(-shift, shift, 3)
            rgb = np.asarray(rgb, np.float64)
            rgb = rgb.mean() + 0.7 * (rgb - rgb.mean())   # less saturated
            palette[-1][key] = tuple(float(v) for v in np.clip(
                    mix @ rgb * 0.85 + 10.0 + offset, 0.0, 255.0))
    return tuple(palette)


SOURCE_PALETTE = ({k: tuple(map(float, v)) for k, v in _SOURCE_CLASS_COLOURS.items()},
                  {k: tuple(map(float, v)) for k, v in _SOURCE_PART_COLOURS.items()})
TARGET_PALETTE = _target_palette()


@dataclasses.dataclass
class Camera:
    """Pinhole camera over a flat ground plane (see the module docstring)."""

    height: int
    width: int
    focal: float
    horizon: float    # row of the horizon (y_h)
    vanish_x: float   # column of the vanishing point (x_v)

    def col(self, lateral, depth):
        """Image column of lateral offset `lateral` at `depth`."""
        return self.vanish_x + lateral * self.focal / depth

    def row(self, elevation, depth):
        """Image row of a point `elevation` metres above ground at `depth`."""
        return self.horizon + (CAMERA_HEIGHT - elevation) * self.focal / depth

    def pixels(self, metres, depth):
        """Size in pixels of `metres` at `depth`."""
        return metres * self.focal / depth


class Canvas:
    """Label, depth, flat colour and orientation canvases of one scene."""

    def __init__(self, camera, palette):
        h, w = camera.height, camera.width
        self.camera = camera
        self.class_colours, self.part_colours = palette
        self.label = np.full((h, w), SKY, np.uint8)
        self.depth = np.full((h, w), SKY_DEPTH, np.float32)
        self.rgb = np.full((h, w, 3), self.class_colours[SKY], np.float32)
        self.orient = np.full((h, w), ORIENT_SKY, np.uint8)

    def paint(self, rows, cols, mask, cls, depth, colour, orient):
        """Paints `mask` (bool [len(rows), len(cols)]) at slices rows, cols; `depth` and `colour`
        are a scalar and an RGB triple, or their values at mask.nonzero() ([N] and [N, 3])."""
        self.label[rows, cols][mask] = cls
        self.orient[rows, cols][mask] = orient
        self.depth[rows, cols][mask] = depth
        self.rgb[rows, cols][mask] = colour

    def colour(self, cls, rng, jitter):
        """The class colour with a per-object random jitter."""
        base = np.asarray(self.class_colours[cls], np.float32)
        return np.clip(base + rng.normal(0.0, jitter, 3), 0, 255)


def _span(lo, hi, size):
    """Pixel index range [i0, i1) whose centres fall in [lo, hi), clipped to
    [0, size); a thinner span keeps the pixel holding its middle (far poles)."""
    if not hi > lo:
        lo, hi = hi, lo
    i0, i1 = int(np.ceil(lo - 0.5)), int(np.ceil(hi - 0.5))
    if i1 <= i0:
        i0 = int(np.floor((lo + hi) / 2.0))
        i1 = i0 + 1
    return max(i0, 0), min(i1, size)


def draw_rect(canvas, lateral, elevation, depth, cls, colour, orient=ORIENT_FRONT):
    """A camera-facing rectangle: lateral (X0, X1) x elevation (Y0, Y1) at depth."""
    cam = canvas.camera
    c0, c1 = _span(cam.col(lateral[0], depth), cam.col(lateral[1], depth), cam.width)
    r0, r1 = _span(cam.row(elevation[1], depth), cam.row(elevation[0], depth), cam.height)
    if c1 <= c0 or r1 <= r0:
        return
    mask = np.ones((r1 - r0, c1 - c0), bool)
    canvas.paint(slice(r0, r1), slice(c0, c1), mask, cls, depth, colour, orient)


def draw_ellipse(canvas, lateral, elevation, radii, depth, cls, colour):
    """A camera-facing ellipse centred at (lateral, elevation), radii in metres."""
    cam = canvas.camera
    cx, cy = cam.col(lateral, depth), cam.row(elevation, depth)
    rx, ry = (max(cam.pixels(radius, depth), 0.5) for radius in radii)
    c0, c1 = _span(cx - rx, cx + rx, cam.width)
    r0, r1 = _span(cy - ry, cy + ry, cam.height)
    if c1 <= c0 or r1 <= r0:
        return
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5 - cx) / rx
    ys = (np.arange(r0, r1, dtype=np.float32) + 0.5 - cy) / ry
    mask = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
    if not mask.any():  # sub-pixel: keep the pixel holding the centre
        i, j = int(cy) - r0, int(cx) - c0
        if 0 <= i < mask.shape[0] and 0 <= j < mask.shape[1]:
            mask[i, j] = True
    canvas.paint(slice(r0, r1), slice(c0, c1), mask, cls, depth, colour, ORIENT_FRONT)


def draw_side_plane(canvas, lateral, depths, bottom, top, cls, colour, pattern=None):
    """A vertical plane along the street (facade, hedge, car side) at lateral offset X != 0 from
    depth z0 to z1 (`depths`), elevation `bottom` to `top` (metres; or a function of depth arrays).
    `pattern`: optional function (depth [N], elevation [N]) of its pixels -> (bool [N], RGB) of a
    second colour on it (windows), the label staying `cls`."""
    cam = canvas.camera
    z0, z1 = depths
    c0, c1 = _span(cam.col(lateral, z0), cam.col(lateral, z1), cam.width)
    if c1 <= c0:
        return
    dx = np.arange(c0, c1, dtype=np.float32) + 0.5 - cam.vanish_x
    with np.errstate(divide="ignore", invalid="ignore"):
        z = lateral * cam.focal / dx
    z = np.where(np.isfinite(z) & (z > 0), z, z1)
    z = np.clip(z, z0, z1).astype(np.float32)
    tops = top(z) if callable(top) else np.full_like(z, top)
    row_top, row_bottom = cam.row(tops, z), cam.row(bottom, z)
    r0, _ = _span(float(row_top.min()), float(row_top.min()) + 1, cam.height)
    _, r1 = _span(float(row_bottom.max()) - 1, float(row_bottom.max()), cam.height)
    if r1 <= r0:
        return
    ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    mask = (ys >= row_top[None, :]) & (ys < row_bottom[None, :])
    # Keep at least one row per column so sub-pixel strips stay visible.
    thin = ~mask.any(axis=0)
    if thin.any():
        mid = np.clip(((row_top + row_bottom) / 2).astype(int) - r0, 0, r1 - r0 - 1)
        cols = np.nonzero(thin)[0]
        mask[mid[cols], cols] = True
    # Values at the painted pixels only (in mask.nonzero() order).
    pixel_rows, pixel_cols = np.nonzero(mask)
    depth = z[pixel_cols]
    colour = np.asarray(colour, np.float32)
    if pattern is not None:
        elevation = CAMERA_HEIGHT - (ys[pixel_rows, 0] - cam.horizon) * depth / cam.focal
        on, second = pattern(depth, elevation)
        colour = np.where(on[:, None], np.asarray(second, np.float32), colour)
    # A plane on the left faces right (its normal points at +X) and v.v.
    orient = ORIENT_LEFT if lateral < 0 else ORIENT_RIGHT
    canvas.paint(slice(r0, r1), slice(c0, c1), mask, cls, depth, colour, orient)


def _window_pattern(rng, canvas, start, top_of):
    """Window grid on a facade: returns a pattern function for draw_side_plane."""
    spacing = rng.uniform(2.5, 4.0)
    width = spacing * rng.uniform(0.35, 0.6)
    floor = rng.uniform(2.8, 3.5)
    height = floor * rng.uniform(0.4, 0.6)
    colour = canvas.part_colours["window"]

    def pattern(depth, elevation):
        big = canvas.camera.pixels(width, depth) >= 1.5   # windows of 1.5+ pixels only
        along = np.mod(depth - start, spacing) < width
        up = np.mod(elevation, floor) < height
        inside = (elevation > 2.0) & (elevation < top_of(depth) - 0.8)
        return big & along & up & inside, colour

    return pattern


@dataclasses.dataclass
class Street:
    """The street cross-section, in metres from the camera (left < 0)."""

    road_left: float      # road spans [-road_left, road_right]
    road_right: float
    walk_left: float      # sidewalk widths
    walk_right: float
    lane: float           # lateral position of the dashed centre line
    end: float            # depth of the far end of the street

    def edge(self, side):
        """Lateral offset of the road edge on `side` (-1 left, +1 right)."""
        return -self.road_left if side < 0 else self.road_right

    def outer(self, side):
        """Lateral offset of the sidewalk's outer edge on `side`."""
        return self.edge(side) + side * (self.walk_left if side < 0 else self.walk_right)


def draw_ground(canvas, street):
    """Road (with a dashed centre line), sidewalks and terrain below the horizon."""
    cam = canvas.camera
    r0 = max(int(np.ceil(cam.horizon - 0.5)), 0)
    if r0 >= cam.height:
        return
    ys = np.arange(r0, cam.height, dtype=np.float32) + 0.5
    z = np.minimum(CAMERA_HEIGHT * cam.focal / np.maximum(ys - cam.horizon, 1e-3),
                   MAX_GROUND_DEPTH).astype(np.float32)
    xs = np.arange(cam.width, dtype=np.float32) + 0.5
    lateral = (xs[None, :] - cam.vanish_x) * z[:, None] / cam.focal
    cls = np.full(lateral.shape, TERRAIN, np.uint8)
    cls[(lateral >= street.outer(-1)) & (lateral <= street.outer(1))] = SIDEWALK
    road = (lateral >= -street.road_left) & (lateral <= street.road_right)
    cls[road] = ROAD
    colours = np.asarray([canvas.class_colours.get(k, (0, 0, 0))
                          for k in range(TERRAIN + 1)], np.float32)
    rgb = colours[cls]
    dash = (np.abs(lateral - street.lane) < 0.08) & (np.mod(z, 6.0) < 3.0)[:, None]
    rgb[road & dash] = canvas.part_colours["lane"]
    rows = slice(r0, cam.height)
    canvas.label[rows] = cls
    canvas.depth[rows] = np.broadcast_to(z[:, None], cls.shape)
    canvas.rgb[rows] = rgb
    canvas.orient[rows] = ORIENT_GROUND


def _wavy(rng, base, amplitude):
    """A function of depth giving a wavy treeline elevation."""
    k1, k2 = rng.uniform(0.3, 0.9), rng.uniform(1.0, 2.5)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)

    def top(z):
        return base + amplitude * (np.sin(k1 * z + p1) + 0.5 * np.sin(k2 * z + p2))

    return top


def draw_backdrop(canvas, rng, street):
    """Buildings and trees across the far end of the street."""
    cam = canvas.camera
    z = street.end
    open_road = rng.random() < 0.6  # the road runs on to the horizon
    lo, hi = cam.col(street.outer(-1) - 1.0, z), cam.col(street.outer(1) + 1.0, z)
    x = -1.0
    while x < cam.width + 1:
        block = cam.pixels(rng.uniform(8.0, 25.0), z)
        if not (open_road and x + block > lo and x < hi):
            left = (x - cam.vanish_x) * z / cam.focal
            right = (x + block - cam.vanish_x) * z / cam.focal
            cls, heights = ((BUILDING, (8.0, 30.0)) if rng.random() < 0.7
                            else (VEGETATION, (5.0, 12.0)))
            draw_rect(canvas, (left, right), (0.0, rng.uniform(*heights)), z,
                      cls, canvas.colour(cls, rng, 10.0))
        x += block


def draw_side(canvas, rng, street, side):
    """Facades, hedges, walls and fences along one side of the street."""
    z = rng.uniform(2.0, 6.0)
    while z < street.end:
        z1 = min(z + rng.uniform(6.0, 25.0), street.end)
        kind = rng.random()
        lateral = street.outer(side) + side * rng.uniform(0.0, 1.5)  # set back
        if kind < 0.6:
            height = rng.uniform(6.0, 25.0)
            top = (lambda h: lambda d: np.full_like(d, h))(height)
            pattern = _window_pattern(rng, canvas, z, top)
            draw_side_plane(canvas, lateral, (z, z1), 0.0, height, BUILDING,
                            canvas.colour(BUILDING, rng, 12.0), pattern)
        elif kind < 0.92:
            top = _wavy(rng, rng.uniform(3.0, 9.0), rng.uniform(0.3, 1.5))
            draw_side_plane(canvas, lateral + side * rng.uniform(0.5, 3.0), (z, z1), 0.0, top,
                            VEGETATION, canvas.colour(VEGETATION, rng, 12.0))
            if rng.random() < 0.5:  # a wall or fence in front of the trees
                cls = WALL if rng.random() < 0.4 else FENCE
                draw_side_plane(canvas, street.outer(side), (z, z1), 0.0, rng.uniform(0.8, 2.0),
                                cls, canvas.colour(cls, rng, 10.0))
        z = z1 + (rng.uniform(1.0, 6.0) if kind >= 0.92 else 0.0)


def draw_car(canvas, rng, lateral, depth):
    """A car seen from behind or ahead, with its visible side face."""
    width, height, length = rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.7), 4.3
    body = canvas.colour(CAR, rng, 18.0)
    left, right = lateral - width / 2, lateral + width / 2
    if left > 0 or right < 0:  # the side facing the camera
        draw_side_plane(canvas, left if left > 0 else right, (depth, depth + length), 0.25,
                        height * 0.62, CAR, body * 0.85)
    draw_rect(canvas, (left + 0.2, right - 0.2), (height * 0.6, height), depth, CAR, body)
    draw_rect(canvas, (left + 0.3, right - 0.3), (height * 0.64, height * 0.94),
              depth, CAR, canvas.part_colours["car_window"])
    draw_rect(canvas, (left, right), (0.25, height * 0.62), depth, CAR, body)
    for x0 in (left + 0.05, right - 0.4):
        draw_rect(canvas, (x0, x0 + 0.35), (0.0, 0.35), depth, CAR, canvas.part_colours["wheel"])


def draw_person(canvas, rng, lateral, depth):
    """A pedestrian: legs, torso and head."""
    height = rng.uniform(1.55, 1.95)
    legs = canvas.part_colours["legs"]
    torso = canvas.colour(PERSON, rng, 15.0)
    leg_top = height * 0.48
    for x0 in (lateral - 0.2, lateral + 0.04):
        draw_rect(canvas, (x0, x0 + 0.16), (0.0, leg_top), depth, PERSON, legs)
    draw_rect(canvas, (lateral - 0.24, lateral + 0.24),
              (leg_top, height * 0.84), depth, PERSON, torso)
    head = height * 0.075
    draw_ellipse(canvas, lateral, height - head, (head * 0.85, head), depth,
                 PERSON, canvas.part_colours["skin"])


def draw_pole(canvas, rng, lateral, side, depth):
    """A pole with a traffic sign, a traffic light, or a plain lamp."""
    height, radius = rng.uniform(3.5, 7.0), rng.uniform(0.06, 0.12)
    draw_rect(canvas, (lateral - radius, lateral + radius), (0.0, height), depth,
              POLE, canvas.colour(POLE, rng, 8.0))
    kind = rng.random()
    if kind < 0.45:  # traffic sign: a plate or a disc beside the pole, toward the road
        size = rng.uniform(0.5, 0.9)
        centre = lateral - side * (radius + size / 2)
        elevation = rng.uniform(2.2, max(2.3, height - size / 2))
        colour = canvas.colour(TRAFFIC_SIGN, rng, 10.0)
        if rng.random() < 0.5:
            draw_rect(canvas, (centre - size / 2, centre + size / 2),
                      (elevation - size / 2, elevation + size / 2), depth * 0.999,
                      TRAFFIC_SIGN, colour)
        else:
            draw_ellipse(canvas, centre, elevation, (size / 2, size / 2),
                         depth * 0.999, TRAFFIC_SIGN, colour)
    elif kind < 0.85:  # traffic light: a box with three lamps
        box_w, box_h = rng.uniform(0.3, 0.45), rng.uniform(0.8, 1.1)
        draw_rect(canvas, (lateral - box_w / 2, lateral + box_w / 2), (height - box_h, height),
                  depth * 0.999, TRAFFIC_LIGHT, canvas.colour(TRAFFIC_LIGHT, rng, 10.0))
        lit = int(rng.integers(0, 3))
        lamp = box_h / 3
        draw_ellipse(canvas, lateral, height - lamp * (lit + 0.5), (box_w * 0.3, lamp * 0.3),
                     depth * 0.998, TRAFFIC_LIGHT, canvas.part_colours["lamp"])


def draw_tree(canvas, rng, lateral, depth):
    """A street tree: trunk and crown (both vegetation, as in Cityscapes)."""
    crown, trunk_top = rng.uniform(1.2, 2.4), rng.uniform(2.0, 3.5)
    colour = canvas.colour(VEGETATION, rng, 12.0)
    draw_rect(canvas, (lateral - 0.15, lateral + 0.15), (0.0, trunk_top + crown),
              depth, VEGETATION, colour * 0.6)
    draw_ellipse(canvas, lateral, trunk_top + crown, (crown, crown * 1.1), depth,
                 VEGETATION, colour)


_DRAW = {"car": draw_car, "person": draw_person, "tree": draw_tree}


def render_scene(rng, height, width, palette):
    """Draws one random street scene: (label uint8 trainIds [H, W], depth float32 metres [H, W],
    flat colour float32 [H, W, 3] in 0..255, orientation uint8 [H, W])."""
    camera = Camera(height=height, width=width, focal=FOCAL_FRACTION * width,
                    horizon=height * rng.uniform(0.36, 0.5),
                    vanish_x=width * rng.uniform(0.4, 0.6))
    road_left, road_right = rng.uniform(3.0, 8.0), rng.uniform(2.0, 5.0)
    street = Street(road_left=road_left, road_right=road_right, walk_left=rng.uniform(1.5, 4.0),
                    walk_right=rng.uniform(1.5, 4.0),
                    lane=rng.uniform(-road_left + 1.5, road_right - 1.0),
                    end=rng.uniform(60.0, 150.0))
    canvas = Canvas(camera, palette)
    draw_ground(canvas, street)
    draw_backdrop(canvas, rng, street)
    for side in (-1, 1):
        draw_side(canvas, rng, street, side)
    # Street furniture and agents, drawn far to near.
    objects = []
    for _ in range(int(rng.integers(2, 8))):  # cars on the road
        lo, hi = -street.road_left + 1.0, street.road_right - 1.0
        objects.append((rng.uniform(5.0, 70.0), "car", rng.uniform(lo, hi), 0))
    for _ in range(int(rng.integers(2, 9))):  # people, mostly on sidewalks
        side = -1 if rng.random() < 0.5 else 1
        if rng.random() < 0.8:
            lateral = rng.uniform(*sorted((street.edge(side), street.outer(side))))
        else:
            lateral = rng.uniform(-street.road_left, street.road_right)
        objects.append((rng.uniform(4.0, 45.0), "person", lateral, side))
    for _ in range(int(rng.integers(3, 9))):  # poles near the curb
        side = -1 if rng.random() < 0.5 else 1
        lateral = street.edge(side) + side * rng.uniform(0.3, 0.8)
        objects.append((rng.uniform(4.0, 60.0), "pole", lateral, side))
    for _ in range(int(rng.integers(0, 4))):  # trees on the sidewalk
        side = -1 if rng.random() < 0.5 else 1
        lateral = street.outer(side) - side * rng.uniform(0.5, 1.0)
        objects.append((rng.uniform(5.0, 60.0), "tree", lateral, side))
    objects.sort(key=lambda o: (-o[0], o[1], o[2]))
    for depth, kind, lateral, side in objects:
        if kind == "pole":
            draw_pole(canvas, rng, lateral, side, depth)
        else:
            _DRAW[kind](canvas, rng, lateral, depth)
    return canvas.label, canvas.depth, canvas.rgb, canvas.orient


def _smooth_noise(rng, height, width, cell):
    """Value noise in [-1, 1]: a random grid every `cell` pixels, bilinear."""
    grid = rng.uniform(-1.0, 1.0, (int(np.ceil(height / cell)) + 2,
                                   int(np.ceil(width / cell)) + 2)).astype(np.float32)
    ys = (np.arange(height, dtype=np.float32) + 0.5) / cell
    xs = (np.arange(width, dtype=np.float32) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    along_x = grid[:, x0] * (1 - fx) + grid[:, x0 + 1] * fx   # [gh, W]
    return along_x[y0] * (1 - fy) + along_x[y0 + 1] * fy


def gaussian_blur(image, sigma):
    """Separable Gaussian blur of a float [H, W, C] image (edge padding)."""
    if sigma <= 0:
        return image
    radius = max(int(np.ceil(3 * sigma)), 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    for _ in range(2):  # down the rows, then (swapped) along them
        size = len(image)
        padded = np.concatenate([image[:1]] * radius + [image] + [image[-1:]] * radius)
        image = taps[0] * padded[:size]
        for k in range(1, len(taps)):
            image += taps[k] * padded[k:k + size]
        image = image.swapaxes(0, 1)
    return image


# Per-class amplitude of the target's fine texture (relative intensity).
_GRAIN = np.full(256, 0.05, np.float32)
_GRAIN[[VEGETATION, TERRAIN]] = 0.2
_GRAIN[[ROAD, SIDEWALK]] = 0.08
_GRAIN[[BUILDING, WALL]] = 0.1
_GRAIN[SKY] = 0.02


def haze(radiance, depth, beta, airlight):
    """Koschmieder's haze: I = J * exp(-beta * d) + A * (1 - exp(-beta * d))."""
    transmission = np.exp(np.float32(-beta) * depth)[..., None]
    return radiance * transmission + np.asarray(airlight, np.float32) * (
            np.float32(1.0) - transmission)


def draw_target_conditions(rng):
    """Per-image look of a target image, a JSON-ready dict: "beta" (haze density per metre,
    log-uniform in BETA_RANGE), "airlight" (RGB; dark with DARK_PROBABILITY), "gain", "cast" (RGB
    factors), "gamma", "shading" (front, left, right surface factors), "blur" (Gaussian sigma,
    pixels), "noise" (sigma, levels)."""
    beta = float(np.exp(rng.uniform(np.log(BETA_RANGE[0]), np.log(BETA_RANGE[1]))))
    if rng.random() < DARK_PROBABILITY:
        airlight = rng.uniform(5.0, 35.0) * np.array([0.8, 0.9, 1.2])
    else:
        airlight = rng.uniform(150.0, 225.0) * (1 + rng.normal(0, 0.04, 3))
    # Rounded here, so the manifest records exactly the values used.
    return {
        "beta": round(beta, 8),
        "airlight": [round(float(a), 3) for a in np.clip(airlight, 0, 255)],
        "gain": round(float(rng.uniform(0.7, 1.25)), 6),
        "cast": [round(float(c), 6) for c in 1 + rng.normal(0.0, 0.06, 3)],
        "gamma": round(float(rng.uniform(0.8, 1.25)), 6),
        "shading": [round(float(s), 6) for s in rng.uniform(0.65, 1.1, 3)],
        "blur": round(float(rng.uniform(0.3, 1.1)), 6),
        "noise": round(float(rng.uniform(1.5, 6.0)), 6),
    }


def draw_shadows(rng, label):
    """Cast shadows of the "shadows" variant: soft blobs s in [0, 1] of value noise (cell width/5)
    off the sky, darkened by a strength drawn in SHADOW_STRENGTH and bluish (lit by the sky only):
    factor = 1 - strength * s * (1 - SHADOW_TINT). Returns (float32 [H, W, 3] factor, JSON-ready
    dict of the strength and the share of pixels s > 0.5)."""
    h, w = label.shape
    field = _smooth_noise(rng, h, w, max(w / 5.0, 2.0))
    threshold = np.float32(rng.uniform(0.1, 0.3))
    soft = 1.0 / (1.0 + np.exp(-(field - threshold) * np.float32(12.0)))
    soft = np.where(label == SKY, np.float32(0.0), soft).astype(np.float32)
    strength = np.float32(rng.uniform(*SHADOW_STRENGTH))
    factor = 1.0 - strength * soft[..., None] * (1.0 - np.asarray(SHADOW_TINT, np.float32))
    return factor.astype(np.float32), {"shadow_strength": round(float(strength), 6),
                                       "shadow_fraction": round(float(np.mean(soft > 0.5)), 6)}


def render_target_look(rng, label, depth, rgb, orient, conditions, shadow=None):
    """Turns a flat target-palette scene into a "real" photo (uint8 RGB): texture and illumination
    make the radiance J, haze adds the airlight with depth, then the lens blurs and the sensor adds
    noise. `shadow` (float32 [H, W, 3], `draw_shadows`) multiplies the light before clip and gamma.
    """
    h, w = label.shape
    radiance = rgb / 255.0
    # Texture: a coarse blotch field for all, a fine grain scaled per class.
    blotch = 1 + 0.12 * _smooth_noise(rng, h, w, max(w / 16.0, 2.0))
    grain = 1 + _GRAIN[label] * rng.standard_normal((h, w), dtype=np.float32)
    sky_clouds = 1 + 0.08 * _smooth_noise(rng, h, w, max(w / 6.0, 2.0))
    texture = np.where(label == SKY, sky_clouds, blotch * grain)
    radiance = radiance * texture[..., None]
    # Illumination: orientation shading (sun side), vertical light falloff,
    # exposure, colour cast and gamma.
    shade = np.ones(5, np.float32)
    shade[[ORIENT_FRONT, ORIENT_LEFT, ORIENT_RIGHT]] = conditions["shading"]
    ramp = 1 - 0.15 * np.linspace(0, 1, h, dtype=np.float32)[:, None]
    light = shade[orient] * np.where(orient == ORIENT_GROUND, ramp, np.float32(1.0))
    radiance = radiance * (light[..., None] * np.float32(conditions["gain"])
                           * np.asarray(conditions["cast"], np.float32))
    if shadow is not None:
        radiance = radiance * shadow
    radiance = np.clip(radiance, 0, 1) ** np.float32(conditions["gamma"])
    image = haze(radiance * np.float32(255.0), depth, conditions["beta"], conditions["airlight"])
    image = gaussian_blur(image, conditions["blur"])
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    image = image + noise * (np.float32(conditions["noise"]) + np.float32(0.02) * np.sqrt(image))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_source_look(rgb):
    """The source ("synthetic") look: the flat colours as they are."""
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
